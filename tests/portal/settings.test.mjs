// settings.test.mjs - "Settings and API tokens" in Chromium against a real
// moatd: an API token shown once and then used, users, settings as text,
// the policy's export and import, the audit log's pages.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  OUT, api, dialogButton as dialogButtonOf, launch, login, newPage, noDialog as noDialogOf, openHash,
  screenshot, startFixture, waitFor,
} from './lib.mjs';

let fx;
let browser;
let page;

before(async () => {
  fx = await startFixture();
  browser = await launch();
  page = await newPage(browser, fx, { permissions: ['clipboard-read', 'clipboard-write'] });
  await login(page, fx);
  await page.waitForLoadState('networkidle');
  page.errors.length = 0; // the login's and the dashboard's, not this page's
});

after(async () => {
  await browser?.close();
  await fx?.stop();
});

const open = (ready = '#audit-list table') => openHash(page, fx, 'settings', ready);
const dialogButton = (name) => dialogButtonOf(page, name);
const noDialog = () => noDialogOf(page);

async function noToasts() {
  await page.evaluate(() => document.getElementById('toasts').replaceChildren());
}

// The text of the message an invalid input points to.
async function fieldError(selector) {
  const input = page.locator(`${selector}[aria-invalid="true"]`);
  await input.waitFor();
  return page.locator(`#${await input.getAttribute('aria-describedby')}`).textContent();
}

function bearer(token, urlPath) {
  return fetch(fx.url + urlPath, { headers: { Authorization: `Bearer ${token}` } });
}

test('API tokens: a new token is shown once, copies, works with its scopes, and is revoked', async () => {
  await page.setViewportSize({ width: 1280, height: 800 });
  await open('#token-list');
  await page.locator('#token-list .empty').waitFor();
  assert.equal(await page.locator('#token-scope-read').isChecked(), true);
  await page.locator('#token-create').click();
  const secret = page.locator('#token-secret');
  await secret.waitFor();
  const token = await secret.inputValue();
  assert.match(token, /^moat_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
  await page.locator('#token-new').getByText('shown only this once').waitFor();
  const id = token.split('_')[1];
  await page.locator('#token-list tr', { hasText: id }).waitFor();
  await noToasts();
  await screenshot(page, 'settings-token-1280');

  // the copy button puts it on the clipboard
  await page.getByRole('button', { name: /^Copy token/ }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token);

  // it works, with its scope and no more
  let r = await bearer(token, '/api/v1/domains');
  assert.equal(r.status, 200);
  assert.ok((await r.json()).items.some((d) => d.name === fx.domain));
  assert.equal((await bearer(token, '/api/v1/health')).status, 200);
  assert.equal((await bearer(token, '/api/v1/tokens')).status, 403, 'a read token lists no tokens');

  // dismissed, and after a reload: listed by its id, the secret nowhere
  await page.getByRole('button', { name: 'I have stored it' }).click();
  await secret.waitFor({ state: 'detached' });
  await open('#token-list table');
  await page.locator('#token-list tr', { hasText: id }).waitFor();
  assert.ok(!(await page.content()).includes(token.split('_')[2]));

  // a token with several scopes
  await page.locator('#token-scope-read').uncheck();
  await page.locator('#token-create').click();
  assert.match(await page.locator('#settings-tokens .field-error').textContent(), /at least one scope/);
  await page.locator('#token-scope-operate').check();
  await page.locator('#token-scope-admin').check();
  await page.locator('#token-create').click();
  const admin = await page.locator('#token-secret').inputValue();
  assert.notEqual(admin, token);
  assert.equal((await bearer(admin, '/api/v1/tokens')).status, 200);

  // revoked after a confirmation: refused from then on
  await page.getByRole('button', { name: `Revoke token ${id}` }).click();
  await page.locator('dialog[open]', { hasText: 'Whatever uses it is refused' }).waitFor();
  await dialogButton('Revoke').click();
  await page.locator('#token-list tr', { hasText: id }).waitFor({ state: 'detached' });
  assert.equal((await bearer(token, '/api/v1/domains')).status, 401);
});

test('users: add one, change a password, delete; deleting yourself asks first', async () => {
  await open('#user-list table');
  // the API's refusal next to the field
  await page.locator('#user-name').fill('ops.person');
  await page.locator('#user-password').fill('short');
  await page.locator('#user-password').press('Enter');
  assert.match(await fieldError('#user-password'), /password/i);

  await page.locator('#user-password').fill('correct horse battery');
  await page.locator('#user-password').press('Enter');
  await page.locator('#user-list tr', { hasText: 'ops.person' }).waitFor();
  assert.ok((await api(fx, 'GET', '/api/v1/users')).json.items.some((u) => u.name === 'ops.person'));

  await page.getByRole('button', { name: 'Change the password of ops.person' }).click();
  await page.locator('#pw-new').fill('another good password');
  await page.locator('#pw-again').fill('another good passwort');
  await page.locator('#pw-again').press('Enter');
  assert.match(await fieldError('#pw-again'), /differ/);
  await page.locator('#pw-again').fill('another good password');
  await page.locator('#pw-again').press('Enter');
  await noDialog();
  const r = await fetch(fx.url + '/api/v1/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user: 'ops.person', password: 'another good password' }),
  });
  assert.equal(r.status, 200, 'the new password logs in');

  // yourself: a confirmation that says so; cancelled, nothing happens
  await page.getByRole('button', { name: 'Delete user admin' }).click();
  await page.locator('dialog[open]', { hasText: 'Delete your own user admin?' }).waitFor();
  await page.keyboard.press('Escape');
  await noDialog();
  assert.ok((await api(fx, 'GET', '/api/v1/users')).json.items.some((u) => u.name === 'admin'));

  await page.getByRole('button', { name: 'Delete user ops.person' }).click();
  await dialogButton('Delete').click();
  await page.locator('#user-list tr', { hasText: 'ops.person' }).waitFor({ state: 'detached' });
  assert.ok(!(await api(fx, 'GET', '/api/v1/users')).json.items.some((u) => u.name === 'ops.person'));
});

test('settings: values are set, shown as text, edited and deleted', async () => {
  await open('#setting-list');
  await page.locator('#setting-key').fill('portal.note');
  await page.locator('#setting-value').fill('<b>x</b> and <script>alert(1)</script>');
  await page.locator('#setting-value').press('Control+Enter');
  const row = page.locator('#setting-list tr', { hasText: 'portal.note' });
  await row.getByText('<b>x</b> and <script>alert(1)</script>', { exact: true }).waitFor();
  assert.equal(await page.locator('#setting-list b, #setting-list script').count(), 0);
  let s = (await api(fx, 'GET', '/api/v1/settings')).json.settings;
  assert.equal(s['portal.note'], '<b>x</b> and <script>alert(1)</script>');

  await row.getByRole('button', { name: 'Edit setting portal.note' }).click();
  assert.equal(await page.locator('#setting-key').inputValue(), 'portal.note');
  await page.locator('#setting-value').fill('plain');
  await page.locator('#setting-set').click();
  await row.getByText('plain', { exact: true }).waitFor();

  await page.locator('#setting-key').fill('not a key!');
  await page.locator('#setting-set').click();
  assert.ok((await fieldError('#setting-key')).length > 0);
  await page.locator('#setting-key').fill('');

  await row.getByRole('button', { name: 'Delete setting portal.note' }).click();
  await dialogButton('Delete').click();
  await row.waitFor({ state: 'detached' });
  s = (await api(fx, 'GET', '/api/v1/settings')).json.settings;
  assert.equal(s['portal.note'], undefined);
});

test('configuration: the export downloads JSON; an import replaces the policy after a confirmation', async () => {
  await open('#config-export');
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#config-export').click()]);
  assert.match(download.suggestedFilename(), /^moat-policy-\d{8}\.json$/);
  const file = path.join(OUT, 'settings-export.json');
  await download.saveAs(file);
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.deepEqual(doc.rules.map((r) => r.name).sort(), ['portal-hold', 'portal-refuse']);

  // a wrong line: nothing changes, the API's error names it
  const bad = path.join(OUT, 'settings-import-bad.json');
  fs.writeFileSync(bad, JSON.stringify({ ...doc, rules: [{ ...doc.rules[0], then: ['explode'] }] }));
  await page.locator('#config-file').setInputFiles(bad);
  await page.locator('#config-import').click();
  await dialogButton('Replace').click();
  await page.locator('#config-status .error').waitFor();
  assert.match(await page.locator('#config-status .error').textContent(), /rules\[0\]\.then\[0\]/);

  // a good one
  const good = path.join(OUT, 'settings-import.json');
  doc.lists.push({ scope: '', kind: 'block', pattern: 'imported@bad.example' });
  doc.rules = doc.rules.filter((r) => r.name === 'portal-hold');
  fs.writeFileSync(good, JSON.stringify(doc));
  await page.locator('#config-file').setInputFiles(good);
  await page.locator('#config-import').click();
  await page.locator('dialog[open]', { hasText: 'with the 1 rule and 1 list entry of settings-import.json' }).waitFor();
  await dialogButton('Replace').click();
  await page.locator('#config-status .success', { hasText: 'Imported 1 rule and 1 list entry.' }).waitFor();
  const rules = (await api(fx, 'GET', '/api/v1/rules')).json.items.map((r) => r.name);
  assert.deepEqual(rules, ['portal-hold']);
  const lists = (await api(fx, 'GET', '/api/v1/lists')).json.items;
  assert.deepEqual(lists.map((e) => e.pattern), ['imported@bad.example']);
});

test('audit log: newest first, paged with Older and Newer, filtered by target', async () => {
  for (let i = 0; i < 30; i++)
    assert.equal((await api(fx, 'PUT', `/api/v1/settings/audit.fill.${i}`, { value: String(i) })).status, 200);
  await open('#audit-list table');
  const ids = () => page.locator('#audit-list tbody tr td:nth-child(4)').allTextContents();
  const first = await ids();
  assert.equal(first.length, 25);
  assert.equal(first[0], 'audit.fill.29', 'newest first');
  assert.equal(await page.locator('#audit-newer').isDisabled(), true);
  await page.locator('#audit-older').click();
  await waitFor(async () => (await ids())[0] !== first[0], 'the older page');
  const second = await ids();
  assert.ok(!second.some((t) => first.includes(t) && t.startsWith('audit.fill')), 'no entry twice');
  assert.ok(second.includes('audit.fill.0'));
  await page.locator('#audit-newer').click();
  await waitFor(async () => (await ids())[0] === first[0], 'the newest page again');

  await page.locator('#audit-target').fill('audit.fill.7');
  await page.locator('#audit-target').press('Enter');
  await waitFor(async () => (await ids()).length === 1, 'one entry on that target');
  assert.deepEqual(await ids(), ['audit.fill.7']);
  await page.locator('#audit-target').fill('');
  await page.locator('#audit-target').press('Enter');
  await waitFor(async () => (await ids()).length === 25, 'every target again');

  await noToasts();
  await screenshot(page, 'settings-1280');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator('#audit-list').waitFor();
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), 'nothing wider than 390 px');
  await screenshot(page, 'settings-390');
  await page.setViewportSize({ width: 1280, height: 800 });
});

test('no page error, no CSP violation on the settings page', () => {
  // 400: the refusals the tests asked for
  assert.deepEqual(page.errors.filter((e) => !/status of 400/.test(e)), []);
});
