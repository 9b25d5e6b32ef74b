// policy.test.mjs - the policy pages in Chromium against a real moatd
// (tests/portal/fixture.py: contoso.com from the config file, rules
// portal-hold at 10 and portal-refuse at 20): domains and routes, rules,
// allow and block lists. Every change made through a page is checked
// through the API too; strings an administrator typed stay text.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  api, dialogButton as dialogButtonOf, launch, login, newPage, noDialog as noDialogOf, openHash, screenshot,
  startFixture, waitFor,
} from './lib.mjs';
import { movePlan } from '../../portal/js/pages/rules.js';

let fx;
let browser;
let page;

before(async () => {
  fx = await startFixture();
  browser = await launch();
  page = await newPage(browser, fx);
  await login(page, fx);
  await page.waitForLoadState('networkidle');
  page.errors.length = 0; // the login's and the dashboard's, not these pages'
});

after(async () => {
  await browser?.close();
  await fx?.stop();
});

const open = (hash, ready) => openHash(page, fx, hash, ready);
const dialogButton = (name) => dialogButtonOf(page, name);
const noDialog = () => noDialogOf(page);

async function domains() {
  const r = await api(fx, 'GET', '/api/v1/domains');
  assert.equal(r.status, 200, r.text);
  return r.json.items;
}

async function rules() {
  const r = await api(fx, 'GET', '/api/v1/rules');
  assert.equal(r.status, 200, r.text);
  return r.json.items.sort((a, b) => a.priority - b.priority);
}

// The rule names in the order the page lists them.
function pageOrder() {
  return page.locator('#rule-list li.rule').evaluateAll((els) => els.map((e) => e.dataset.name));
}

async function screenshots(name, ready) {
  await page.evaluate(() => document.getElementById('toasts').replaceChildren());
  await screenshot(page, `${name}-1280`);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator(ready).first().waitFor();
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), `${name}: nothing wider than 390 px`);
  await screenshot(page, `${name}-390`);
  await page.setViewportSize({ width: 1280, height: 800 });
}

// --- domains ---

test('domains: the config file\'s domain is read-only; one added through the page is listed and in the API', async () => {
  await page.setViewportSize({ width: 1280, height: 800 });
  await open('domains', '#domain-list table');
  const cfgRow = page.locator('#domain-list tr', { hasText: fx.domain });
  // GET /api/v1/domains names the file and line that declare it
  await cfgRow.getByText(/declared in .*moat\.conf \(line \d+\)/).waitFor();
  assert.equal(await cfgRow.getByRole('button').count(), 0, 'a config domain has no Edit or Delete');

  await page.locator('#domain-add').click();
  await page.locator('#dom-name').fill('portal-added.example');
  await page.locator('#dom-rcpt-list').check();
  await page.locator('#dom-rcpts').fill('alice\nbob');
  await page.locator('#dom-route-kind').selectOption('smtp');
  await page.locator('#dom-tls').selectOption('required');
  await page.locator('#dom-qscore').fill('5');
  await page.getByRole('button', { name: 'Generate a key' }).click();
  assert.match(await page.locator('#dom-relay-key').inputValue(), /^[A-Za-z0-9_-]{32}$/);
  await page.locator('#dom-route-hosts').fill('[127.0.0.1]:2599');
  await page.locator('#dom-route-hosts').press('Enter'); // Enter submits the form
  await noDialog();
  const row = page.locator('#domain-list tr', { hasText: 'portal-added.example' });
  await row.getByText('smtp:[127.0.0.1]:2599').waitFor();
  await row.getByText('added here').waitFor();

  const d = (await domains()).find((x) => x.name === 'portal-added.example');
  assert.ok(d, 'the API lists the domain');
  assert.equal(d.source, 'api');
  assert.equal(d.any_recipient, false);
  assert.deepEqual(d.recipients.map((r) => r.split('@')[0]).sort(), ['alice', 'bob']);
  assert.equal(d.route, 'smtp:[127.0.0.1]:2599');
  assert.equal(d.quarantine_score, 5);
  assert.equal(d.relay_key_configured, true);
  await screenshots('domains', '#domain-list');
});

test('domains: an invalid route shows the API\'s error next to the route field', async () => {
  await open('domains', '#domain-list table');
  await page.locator('#domain-add').click();
  await page.locator('#dom-name').fill('bad-route.example');
  await page.locator('#dom-route-kind').selectOption('smtp');
  await page.locator('#dom-route-hosts').fill('[x]:99999');
  await page.locator('#dom-save').click();
  const hosts = page.locator('#dom-route-hosts[aria-invalid="true"]');
  await hosts.waitFor();
  const msgId = await hosts.getAttribute('aria-describedby');
  const msg = page.locator(`#${msgId}`);
  assert.match(await msg.textContent(), /is not \[host\]:port/);
  // the message sits in the route's own field, under the input
  assert.equal(await page.locator('.field', { has: hosts }).locator('.field-error').count(), 1);
  await screenshot(page, 'domains-error-1280');
  assert.ok(!(await domains()).some((x) => x.name === 'bad-route.example'));

  // the config file's domain: the API says where it is declared, next to the name
  await page.locator('#dom-name').fill(fx.domain);
  await page.locator('#dom-route-hosts').fill('[127.0.0.1]:25');
  await page.locator('#dom-save').click();
  const name = page.locator('#dom-name[aria-invalid="true"]');
  await name.waitFor();
  assert.match(await page.locator(`#${await name.getAttribute('aria-describedby')}`).textContent(),
               /declared in .+ \(line \d+\): change it there/);
  await page.keyboard.press('Escape'); // Esc closes the dialog
  await noDialog();
});

test('domains: edit (a relay key left empty is removed after asking) and delete', async () => {
  await open('domains', '#domain-list table');
  await page.getByRole('button', { name: 'Edit portal-added.example' }).click();
  await page.locator('#dom-route-kind').selectOption('mx');
  await page.locator('#dom-save').click();
  await page.locator('dialog[open]', { hasText: 'removes the one set now' }).waitFor();
  await dialogButton('Save').click();
  await noDialog();
  await page.locator('#domain-list tr', { hasText: 'portal-added.example' }).getByText('mx', { exact: true }).waitFor();
  let d = (await domains()).find((x) => x.name === 'portal-added.example');
  assert.equal(d.route, 'mx');
  assert.equal(d.relay_key_configured, false);

  await page.getByRole('button', { name: 'Delete portal-added.example' }).click();
  await dialogButton('Delete').click();
  await page.locator('#domain-list tr', { hasText: 'portal-added.example' }).waitFor({ state: 'detached' });
  d = (await domains()).find((x) => x.name === 'portal-added.example');
  assert.equal(d, undefined);
});

// --- rules ---

test('rules: moving never gives two rules one priority, and ends in the asked order', () => {
  const mk = (...ps) => ps.map((p, i) => ({ name: `r${i}`, priority: p }));
  const cases = [
    [mk(10, 20, 30), 2, -1], [mk(10, 20, 30), 0, 1], [mk(0, 1, 2), 1, -1], [mk(0, 1, 2), 1, 1],
    [mk(5, 6), 1, -1], [mk(0, 1), 0, 1], [mk(1000000, 999999).reverse(), 0, 1], [mk(3, 4, 5, 6), 2, -1],
  ];
  for (const [rs, i, d] of cases) {
    const prio = new Map(rs.map((r) => [r.name, r.priority]));
    for (const step of movePlan(rs, i, d)) {
      prio.set(step.rule.name, step.priority);
      const all = [...prio.values()];
      assert.equal(new Set(all).size, all.length, `unique after each step: ${JSON.stringify([...prio])}`);
      assert.ok(all.every((p) => Number.isInteger(p) && p >= 0 && p <= 1000000));
    }
    const want = rs.map((r) => r.name);
    [want[i], want[i + d]] = [want[i + d], want[i]];
    const got = [...prio].sort((a, b) => a[1] - b[1]).map((x) => x[0]);
    assert.deepEqual(got, want, `move ${i} by ${d} in ${JSON.stringify(rs)}`);
  }
  assert.deepEqual(movePlan(mk(1, 2), 0, -1), []);
  assert.deepEqual(movePlan(mk(1, 2), 1, 1), []);
});

async function newRule(name, ifs, then, submit) {
  await page.locator('#rule-add').click();
  await page.locator('#rule-name').fill(name);
  await page.locator('#rule-if').fill(ifs);
  await page.locator('#rule-then').fill(then);
  if (submit === 'ctrl-enter')
    await page.locator('#rule-then').press('Control+Enter');
  else
    await page.locator('#rule-save').click();
  await noDialog();
  await page.locator(`#rule-list li.rule[data-name="${name}"]`).waitFor();
}

test('rules: create two, reorder them, disable one, delete one', async () => {
  await open('rules', '#rule-list ol.rules');
  await newRule('first test', 'sender @one.example', 'score 1', 'ctrl-enter');
  await newRule('second test', 'sender @two.example\nheader Subject ^urgent', 'set-header X-Second: yes\nscore 2');
  let rs = await rules();
  assert.deepEqual(rs.map((r) => r.name), ['portal-hold', 'portal-refuse', 'first test', 'second test']);
  assert.deepEqual(rs[3].if, ['sender @two.example', 'header Subject ^urgent']);
  assert.deepEqual(await pageOrder(), rs.map((r) => r.name));

  // with room between the priorities: one PUT
  await page.getByRole('button', { name: 'Move second test up' }).click();
  await waitFor(async () => (await pageOrder())[2] === 'second test', 'the page shows the new order');
  rs = await rules();
  assert.deepEqual(rs.map((r) => r.name), ['portal-hold', 'portal-refuse', 'second test', 'first test']);

  // no room anywhere (20, 21, 22, 23): a swap through a free priority
  for (const [n, p] of [['second test', 21], ['first test', 22]]) {
    const r = rs.find((x) => x.name === n);
    assert.equal((await api(fx, 'PUT', `/api/v1/rules/${encodeURIComponent(n)}`, { ...r, name: undefined, priority: p })).status, 200);
  }
  assert.equal((await api(fx, 'PUT', '/api/v1/rules/third%20test', { priority: 23, then: ['score 0'] })).status, 201);
  await open('rules', '#rule-list li.rule[data-name="third test"]');
  await page.getByRole('button', { name: 'Move first test up' }).click();
  await waitFor(async () => (await pageOrder())[2] === 'first test', 'the page shows the swap');
  rs = await rules();
  assert.deepEqual(rs.map((r) => [r.name, r.priority]),
                   [['portal-hold', 10], ['portal-refuse', 20], ['first test', 21], ['second test', 22], ['third test', 23]]);
  assert.equal(await page.locator('[data-name="first test"] [data-act="up"]').evaluate((b) => b === document.activeElement),
               true, 'the focus stays on the moved rule\'s button');

  // disable
  await page.getByRole('button', { name: 'Disable first test' }).click();
  await page.locator('li.rule.off[data-name="first test"]').getByText('disabled').waitFor();
  rs = await rules();
  assert.equal(rs.find((r) => r.name === 'first test').enabled, false);
  assert.deepEqual(rs.find((r) => r.name === 'first test').if, ['sender @one.example'], 'the lines stay');

  // delete, after a confirmation
  await page.getByRole('button', { name: 'Delete second test' }).click();
  await page.locator('dialog[open]', { hasText: 'Delete the rule second test?' }).waitFor();
  await dialogButton('Delete').click();
  await page.locator('li.rule[data-name="second test"]').waitFor({ state: 'detached' });
  assert.equal((await api(fx, 'GET', '/api/v1/rules/second%20test')).status, 404);
  await screenshots('rules', '#rule-list li.rule');
});

test('rules: a wrong line gets the API\'s error next to it, with its line number', async () => {
  await open('rules', '#rule-list li.rule');
  await page.getByRole('button', { name: 'Edit first test' }).click();
  await page.locator('#rule-if').fill('sender @one.example\nsendr @x.example');
  await page.locator('#rule-save').click();
  const ifs = page.locator('#rule-if[aria-invalid="true"]');
  await ifs.waitFor();
  const msg = await page.locator(`#${await ifs.getAttribute('aria-describedby')}`).textContent();
  assert.match(msg, /^Line 2 \(sendr @x\.example\): unknown condition 'sendr'/);
  await screenshot(page, 'rules-error-1280');

  // a second rule on a priority already taken: next to the priority
  await page.locator('#rule-if').fill('sender @one.example');
  await page.locator('#rule-priority').fill('10');
  await page.locator('#rule-save').click();
  const prio = page.locator('#rule-priority[aria-invalid="true"]');
  await prio.waitFor();
  assert.match(await page.locator(`#${await prio.getAttribute('aria-describedby')}`).textContent(),
               /another rule has priority 10/);
  await page.keyboard.press('Escape');
  await noDialog();
  const r = (await rules()).find((x) => x.name === 'first test');
  assert.equal(r.priority, 21);
  assert.deepEqual(r.if, ['sender @one.example']);
});

test('rules: lines with markup show as text', async () => {
  await open('rules', '#rule-list li.rule');
  await newRule('markup', 'header Subject <b>x</b>', 'set-header X-Note: <i>y</i>');
  const li = page.locator('li.rule[data-name="markup"]');
  await li.getByText('header Subject <b>x</b>', { exact: true }).waitFor();
  await li.getByText('set-header X-Note: <i>y</i>', { exact: true }).waitFor();
  assert.equal(await page.locator('#rule-list b, #rule-list i').count(), 0);
});

// --- allow and block lists ---

test('lists: add and delete entries, global and per domain, and filter them', async () => {
  await open('lists', '#list-entries .empty');
  await page.locator('#list-pattern').fill('spammer@bad.example');
  await page.locator('#list-kind').selectOption('block');
  await page.locator('#list-scope').selectOption(fx.domain);
  await page.locator('#list-pattern').press('Enter');
  await page.locator('#list-entries tr', { hasText: 'spammer@bad.example' }).waitFor();

  await page.locator('#list-pattern').fill('@partner.example');
  await page.locator('#list-kind').selectOption('allow');
  await page.locator('#list-scope').selectOption('');
  await page.locator('#list-add').click();
  await page.locator('#list-entries tr', { hasText: '@partner.example' }).waitFor();

  const long = 'a-very-long-local-part-that-goes-on-and-on-and-on@' + 'sub.'.repeat(12) + 'example.org';
  await page.locator('#list-pattern').fill(long);
  await page.locator('#list-kind').selectOption('block');
  await page.locator('#list-add').click();
  await page.locator('#list-entries tr', { hasText: long }).waitFor();

  let items = (await api(fx, 'GET', '/api/v1/lists')).json.items;
  assert.ok(items.some((e) => e.scope === fx.domain && e.kind === 'block' && e.pattern === 'spammer@bad.example'));
  assert.ok(items.some((e) => e.scope === '' && e.kind === 'allow' && e.pattern === '@partner.example'));

  // filter: the text, the list, the scope
  await page.locator('#list-filter').fill('partner');
  await waitFor(async () => (await page.locator('#list-entries tbody tr').count()) === 1, 'one entry left');
  await page.locator('#list-filter').fill('');
  await page.locator('#list-filter-scope').selectOption(fx.domain);
  await waitFor(async () => (await page.locator('#list-entries tbody tr').count()) === 1, 'the domain\'s entry');
  await page.locator('#list-filter-scope').selectOption('*');
  await page.locator('#list-filter-kind').selectOption('block');
  await waitFor(async () => (await page.locator('#list-entries tbody tr').count()) === 2, 'the block entries');
  await page.locator('#list-filter-kind').selectOption('');
  await screenshots('lists', '#list-entries table');

  // an entry that is not an address: the API's error next to the pattern, as text
  await page.locator('#list-pattern').fill('<b>x</b>');
  await page.locator('#list-add').click();
  const pat = page.locator('#list-pattern[aria-invalid="true"]');
  await pat.waitFor();
  assert.match(await page.locator(`#${await pat.getAttribute('aria-describedby')}`).textContent(),
               /is not an address or @domain/);
  assert.equal(await page.locator('main b').count(), 0);

  // delete, after a confirmation
  await page.getByRole('button', { name: `Remove spammer@bad.example from the block list of ${fx.domain}` }).click();
  await dialogButton('Remove').click();
  await page.locator('#list-entries tr', { hasText: 'spammer@bad.example' }).waitFor({ state: 'detached' });
  items = (await api(fx, 'GET', '/api/v1/lists')).json.items;
  assert.ok(!items.some((e) => e.pattern === 'spammer@bad.example'));
  assert.ok(items.some((e) => e.pattern === '@partner.example'));
});

test('no page error, no CSP violation on the policy pages', () => {
  // 400 and 409: the refusals the tests asked for
  const unexpected = page.errors.filter((e) => !/status of (400|409)/.test(e));
  assert.deepEqual(unexpected, []);
});
