// quarantine.test.mjs - the quarantine and tracking pages in Chromium
// against a real moatd (tests/portal/fixture.py): a held message is found,
// previewed (text, attachment with its SHA-256), released, and arrives at
// the sink exactly once; a release to one chosen recipient; a subject and
// a file name made of markup stay text (no dialog, no element made from
// them); two messages deleted together; a message found by tracking and
// its timeline; keyboard use (Enter opens a row, Esc closes a dialog);
// nothing wider than the window at 1280 px and at 390 px; screenshots of
// every page in tests/out/portal/.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, test } from 'node:test';

import {
  api, launch, login, newPage, screenshot, sendMail, sinkMessages, startFixture, waitFor, waitSink,
} from './lib.mjs';

// Held by a header too, so that a subject can be anything (the fixture
// holds subjects starting with "hold").
const RULE = '[rule portal-test-hold]\npriority = 5\nif = header X-Portal-Hold ^yes\nthen = quarantine\n';
const XSS = '<script>alert(1)</script><img src=x onerror=alert(2)>';
const XSS_FILE = '"><img src=x onerror=alert(3)>.pdf';
const PHONE = { viewport: { width: 390, height: 844 } };
const DESK = { viewport: { width: 1280, height: 900 } };

let fx;
let browser;
const tag = Date.now().toString(36);

before(async () => {
  fx = await startFixture({ conf: RULE });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await fx?.stop();
});

async function session(opts = DESK) {
  const page = await newPage(browser, fx, opts);
  page.dialogs = [];
  page.on('dialog', async (d) => {
    page.dialogs.push(d.message());
    await d.dismiss();
  });
  await login(page, fx);
  await page.locator('h1', { hasText: 'Dashboard' }).waitFor();
  return page;
}

// Errors that would mean the page broke: uncaught exceptions and CSP
// violations (an expired-session probe's 401 before the login is expected).
function brokenErrors(page) {
  return page.errors.filter((e) => /pageerror|Content Security Policy|Refused to/i.test(e));
}

async function noOverflow(page) {
  const [sw, w] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(sw <= w, `the page is ${sw} px wide in a ${w} px window`);
}

async function heldId(subject) {
  return waitFor(async () => {
    const q = await api(fx, 'GET', '/api/v1/quarantine?state=held&subject=' + encodeURIComponent(subject));
    return q.json.items.find((m) => m.subject === subject)?.id;
  }, `"${subject}" held`);
}

// The quarantine list filtered by a subject substring.
async function searchQuarantine(page, text, state) {
  await page.goto(fx.url + '/#/quarantine');
  await page.locator('form.filters').waitFor();
  if (state !== undefined) await page.locator('select[name=state]').selectOption(state);
  await page.locator('input[name=subject]').fill(text);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('tbody tr, .empty').first().waitFor();
}

function multipart(subject, attName, attBytes, extra = '') {
  const b = 'b-' + tag;
  const data = attBytes.toString('base64').replace(/.{76}/g, '$&\r\n');
  return `From: <sender@remote.example>\r\nTo: <alice@${fx.domain}>\r\nSubject: ${subject}\r\n` +
    `Message-ID: <${crypto.randomUUID()}@remote.example>\r\nDate: ${new Date().toUTCString()}\r\n` +
    `MIME-Version: 1.0\r\n${extra}Content-Type: multipart/mixed; boundary="${b}"\r\n\r\n` +
    `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the attached invoice.\r\n` +
    `Pay at https://pay.evil.example/now today.\r\n` +
    `--${b}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n` +
    `<p>Click <a href="https://evil.example/login">here</a><script>alert(5)</script></p>\r\n` +
    `--${b}\r\nContent-Type: application/pdf; name="${attName.replace(/"/g, '\\"')}"\r\n` +
    `Content-Disposition: attachment; filename="${attName.replace(/"/g, '\\"')}"\r\n` +
    `Content-Transfer-Encoding: base64\r\n\r\n${data}\r\n--${b}--\r\n`;
}

test('a held message: found, previewed, released, delivered exactly once, tracked', async () => {
  const subject = `hold invoice ${tag}`;
  const att = Buffer.from('%PDF-1.4\n% not really a pdf ' + tag + '\n');
  const sha = crypto.createHash('sha256').update(att).digest('hex');
  const raw = multipart(subject, 'invoice-2026.pdf', att);
  const r = await sendMail(fx, { raw, from: 'sender@remote.example', to: [`alice@${fx.domain}`, `bob@${fx.domain}`] });
  assert.equal(r.code, 250, r.text);
  const id = await heldId(subject);

  const page = await session();
  await searchQuarantine(page, `invoice ${tag}`);
  const row = page.locator('tbody tr', { hasText: subject });
  await row.waitFor();
  assert.match(await row.textContent(), /sender@remote\.example/);
  await noOverflow(page);
  await screenshot(page, 'quarantine-list-1280');

  // Enter on the focused row opens it
  await row.focus();
  await page.keyboard.press('Enter');
  await page.waitForURL(new RegExp('#/quarantine/' + id + '$'));
  const preview = page.locator('section.preview');
  await preview.waitFor();
  await page.locator('.subject-line', { hasText: subject }).waitFor();
  assert.match(await preview.textContent(), /Please see the attached invoice\./);
  // the attachment as text with its size and SHA-256; the HTML as text, its link written out
  const attRow = preview.locator('tr', { hasText: 'invoice-2026.pdf' });
  assert.match(await attRow.textContent(), new RegExp(sha));
  assert.match(await attRow.textContent(), new RegExp(att.length + ' B'));
  assert.match(await preview.textContent(), /https:\/\/evil\.example\/login/);
  assert.equal(await preview.locator('a').count(), 0, 'no link of the message is clickable');
  assert.equal(await page.locator('iframe, object, embed').count(), 0);
  // symbols explained: the rule's symbol, with its description from GET /api/v1/symbols
  const syms = page.locator('section[aria-label="Why it was held"]');
  assert.match(await syms.textContent(), /MOAT_RULE_QUARANTINE/);
  assert.equal(await syms.locator('th', { hasText: 'Meaning' }).count(), 1);
  // the download is a plain link to the .eml
  const dl = page.locator('#q-download');
  assert.equal(await dl.getAttribute('href'), `/api/v1/quarantine/${id}/download`);
  assert.equal(await dl.getAttribute('download'), `${id}.eml`);
  await noOverflow(page);
  await screenshot(page, 'quarantine-detail-1280');

  // release to all: both recipients are offered and checked
  await page.locator('#q-release').click();
  const dialog = page.locator('dialog[open]');
  await dialog.waitFor();
  assert.equal(await dialog.locator('fieldset input[type=checkbox]:checked').count(), 2);
  await screenshot(page, 'quarantine-release-dialog-1280');
  await dialog.getByRole('button', { name: 'Release', exact: true }).click();
  await page.locator('.action-status .success', { hasText: 'Released to all recipients.' }).waitFor();
  await page.locator('dd .badge.released').waitFor();

  // it arrives once, to both recipients, and both are delivered
  await waitSink(fx, { subject });
  await waitFor(async () => {
    const t = await api(fx, 'GET', `/api/v1/tracking/${id}`);
    return t.json.rcpts.length === 2 && t.json.rcpts.every((x) => x.outcome === 'delivered');
  }, 'both recipients delivered');
  const got = sinkMessages(fx).filter((m) => m.subject === subject);
  assert.equal(got.length, 1, 'delivered exactly once');
  const sunk = [...got[0].raw.matchAll(/^X-Rcpt-Args: <([^>]*)>/gm)].map((m) => m[1]).sort();
  assert.deepEqual(sunk, [`alice@${fx.domain}`, `bob@${fx.domain}`]);

  // releasing twice does not deliver twice: the API says "already"
  const again = await api(fx, 'POST', `/api/v1/quarantine/${id}/release`, {});
  assert.equal(again.json.status, 'already');

  // tracking finds it (by its queue id) and shows the timeline
  await page.goto(fx.url + '/#/tracking');
  await page.locator('input[name=id]').fill(id);
  await page.getByRole('button', { name: 'Search' }).click();
  const trow = page.locator('tbody tr', { hasText: subject });
  await trow.waitFor();
  await noOverflow(page);
  await screenshot(page, 'tracking-list-1280');
  await trow.click();
  await page.waitForURL(new RegExp('#/tracking/' + id + '$'));
  const tl = page.locator('ol.timeline');
  await tl.waitFor();
  const text = await tl.textContent();
  assert.match(text, /Received/);
  assert.match(text, /Verdict/);
  assert.match(text, /Delivery/);
  const rcpts = page.locator('section[aria-label="Recipients"]');
  for (const who of ['alice', 'bob'])
    assert.match(await rcpts.locator('tr', { hasText: `${who}@${fx.domain}` }).textContent(), /delivered/);
  assert.match(await rcpts.textContent(), /250/);
  await noOverflow(page);
  await screenshot(page, 'tracking-timeline-1280');
  assert.deepEqual(brokenErrors(page), []);
  assert.deepEqual(page.dialogs, []);
  await page.context().close();
});

test('release to one chosen recipient, with the rescan skipped', async () => {
  const subject = `hold choose ${tag}`;
  const r = await sendMail(fx, { subject, to: [`carol@${fx.domain}`, `dave@${fx.domain}`] });
  assert.equal(r.code, 250, r.text);
  const id = await heldId(subject);
  const page = await session();
  await page.goto(fx.url + `/#/quarantine/${id}`);
  await page.locator('#q-release').click();
  const dialog = page.locator('dialog[open]');
  // none chosen: the dialog says so and stays
  await dialog.getByRole('checkbox', { name: `carol@${fx.domain}` }).uncheck();
  await dialog.getByRole('checkbox', { name: `dave@${fx.domain}` }).uncheck();
  await dialog.getByRole('button', { name: 'Release', exact: true }).click();
  await dialog.locator('.error', { hasText: 'Choose at least one recipient.' }).waitFor();
  await dialog.getByRole('checkbox', { name: `dave@${fx.domain}` }).check();
  await dialog.getByRole('checkbox', { name: 'Release without scanning for malware again' }).check();
  await dialog.getByRole('button', { name: 'Release', exact: true }).click();
  await page.locator('.action-status .success', { hasText: `Released to dave@${fx.domain}.` }).waitFor();
  const got = await waitSink(fx, { subject });
  const rcpts = [...got.raw.matchAll(/^X-Rcpt-Args: <([^>]*)>/gm)].map((m) => m[1]);
  assert.deepEqual(rcpts, [`dave@${fx.domain}`]);
  assert.match(got.raw, /^X-Moat-Released: [^\n]*rescan=no/m);
  await page.context().close();
});

test('a subject and a file name made of markup stay text', async () => {
  const att = Buffer.from('x');
  const raw = multipart(XSS, XSS_FILE, att, 'X-Portal-Hold: yes\r\n');
  const r = await sendMail(fx, { raw });
  assert.equal(r.code, 250, r.text);
  const id = await heldId(XSS);

  for (const [opts, w] of [[DESK, 1280], [PHONE, 390]]) {
    const page = await session(opts);
    await searchQuarantine(page, 'alert(1)');
    const row = page.locator('tbody tr', { hasText: XSS });
    await row.waitFor();
    assert.equal(await row.locator('a.subject').textContent(), XSS);
    if (w === 390) await screenshot(page, 'quarantine-list-390');
    await row.click();
    await page.locator('section.preview').waitFor();
    assert.equal(await page.locator('.subject-line').textContent(), XSS);
    const dd = page.locator('section.preview dl.kv dt', { hasText: 'Subject' }).locator('xpath=following-sibling::dd[1]');
    assert.equal(await dd.textContent(), XSS);
    assert.equal(await page.locator('section.preview td', { hasText: XSS_FILE }).count(), 1);
    // nothing was made of it: no image, no script but the portal's own
    assert.equal(await page.locator('img').count(), 0);
    const scripts = await page.evaluate(() => [...document.scripts].map((s) => s.getAttribute('src')));
    assert.deepEqual(scripts, ['/js/app.js']);
    // the release dialog shows it as text too
    await page.locator('#q-release').click();
    await page.locator('dialog[open]').waitFor();
    assert.match(await page.locator('dialog[open]').textContent(), /<script>alert\(1\)<\/script>/);
    await page.keyboard.press('Escape');
    await page.locator('dialog').waitFor({ state: 'detached' });
    await noOverflow(page);
    await screenshot(page, `quarantine-detail-markup-${w}`);
    assert.deepEqual(page.dialogs, [], 'no alert() ran');
    assert.deepEqual(brokenErrors(page), []);
    await page.context().close();
  }
  // the Escape released nothing
  const e = await api(fx, 'GET', `/api/v1/quarantine/${id}`);
  assert.equal(e.json.state, 'held');
});

test('two messages deleted together, each result reported', async () => {
  const subjects = [`hold bulk one ${tag}`, `hold bulk two ${tag}`];
  for (const subject of subjects) assert.equal((await sendMail(fx, { subject })).code, 250);
  const ids = [];
  for (const s of subjects) ids.push(await heldId(s));
  const page = await session();
  await searchQuarantine(page, `bulk`);
  for (const s of subjects)
    await page.locator('tbody tr', { hasText: s }).locator('input.rowsel').check();
  await page.locator('.bulk', { hasText: '2 selected' }).waitFor();
  // Esc cancels the dialog: nothing deleted
  await page.getByRole('button', { name: 'Delete selected…' }).click();
  await page.locator('dialog[open]').waitFor();
  await page.keyboard.press('Escape');
  await page.locator('dialog').waitFor({ state: 'detached' });
  for (const id of ids) assert.equal((await api(fx, 'GET', `/api/v1/quarantine/${id}`)).json.state, 'held');

  await page.getByRole('button', { name: 'Delete selected…' }).click();
  const dialog = page.locator('dialog[open]');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /Delete 2 messages for good\?/);
  await screenshot(page, 'quarantine-bulk-dialog-1280');
  await dialog.getByRole('button', { name: 'Delete 2 messages' }).click();
  const results = page.locator('section[aria-label="Results"]');
  await results.locator('.success', { hasText: 'Deleted 2 of 2.' }).waitFor();
  for (const s of subjects) assert.match(await results.locator('li', { hasText: s }).textContent(), /Deleted/);
  // the held list no longer has them
  await page.locator('.empty', { hasText: 'No message matches these filters.' }).waitFor();
  await screenshot(page, 'quarantine-bulk-done-1280');
  for (const id of ids) assert.equal((await api(fx, 'GET', `/api/v1/quarantine/${id}`)).json.state, 'deleted');
  // and under "deleted" they are there
  await searchQuarantine(page, 'bulk', 'deleted');
  for (const s of subjects) await page.locator('tbody tr', { hasText: s }).waitFor();
  assert.deepEqual(brokenErrors(page), []);
  await page.context().close();
});

test('delete one with the sender blocked', async () => {
  const subject = `hold block ${tag}`;
  assert.equal((await sendMail(fx, { subject, from: `spammer-${tag}@junk.example` })).code, 250);
  const id = await heldId(subject);
  const page = await session();
  await page.goto(fx.url + `/#/quarantine/${id}`);
  await page.locator('#q-delete').click();
  const dialog = page.locator('dialog[open]');
  await dialog.getByRole('checkbox', { name: /on the block list/ }).check();
  await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
  await page.locator('.action-status .success', { hasText: 'Deleted. The sender is now on the block list.' }).waitFor();
  const lists = await api(fx, 'GET', '/api/v1/lists');
  assert.ok(JSON.stringify(lists.json).includes(`spammer-${tag}@junk.example`), lists.text);
  await page.context().close();
});

test('the pages at phone width: no overflow, screenshots', async () => {
  const page = await session(PHONE);
  const id = await heldId(XSS);
  await page.goto(fx.url + `/#/quarantine/${id}`);
  await page.locator('section.preview').waitFor();
  await noOverflow(page);
  await screenshot(page, 'quarantine-detail-390');
  await page.goto(fx.url + '/#/tracking');
  await page.locator('tbody tr').first().waitFor();
  await noOverflow(page);
  await screenshot(page, 'tracking-list-390');
  await page.locator('tbody tr').first().click();
  await page.locator('ol.timeline').waitFor();
  await noOverflow(page);
  await screenshot(page, 'tracking-timeline-390');
  assert.deepEqual(brokenErrors(page), []);
  await page.context().close();
});

test('keyset paging with Older and Newer; a date filter with no match says so', async () => {
  const n = 52; // one page is 50
  for (let i = 0; i < n; i++)
    assert.equal((await sendMail(fx, { subject: `hold page ${tag} ${String(i).padStart(2, '0')}` })).code, 250);
  await waitFor(async () => {
    const q = await api(fx, 'GET', `/api/v1/quarantine?state=held&limit=500&subject=${encodeURIComponent('page ' + tag)}`);
    return q.json.items.length === n;
  }, `${n} held`);
  const page = await session();
  await searchQuarantine(page, `page ${tag}`);
  const rows = page.locator('tbody tr');
  await page.locator('caption', { hasText: '50+ messages' }).waitFor();
  assert.equal(await rows.count(), 50);
  // newest first
  assert.match(await rows.first().textContent(), new RegExp(`page ${tag} 51`));
  await page.getByRole('button', { name: 'Older →' }).click();
  await page.locator('.pager', { hasText: 'Page 2' }).waitFor();
  await page.locator('caption', { hasText: /^2 messages/ }).waitFor();
  assert.equal(await rows.count(), 2);
  assert.match(await rows.last().textContent(), new RegExp(`page ${tag} 00`));
  assert.ok(await page.getByRole('button', { name: 'Older →' }).isDisabled());
  await page.getByRole('button', { name: '← Newer' }).click();
  await page.locator('caption', { hasText: '50+ messages' }).waitFor();
  // coming back from a message keeps the filters and the page
  await rows.first().click();
  await page.locator('section.preview').waitFor();
  await page.getByRole('link', { name: '← Quarantine' }).click();
  await page.locator('caption', { hasText: '50+ messages' }).waitFor();
  assert.equal(await page.locator('input[name=subject]').inputValue(), `page ${tag}`);
  // received before 2001: nothing
  await page.locator('input[name=until]').fill('2001-01-01T00:00');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('.empty', { hasText: 'No message matches these filters.' }).waitFor();
  // a subject of 2 characters is refused before asking
  await page.locator('input[name=subject]').fill('ab');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('form.filters .error', { hasText: 'at least 3 characters' }).waitFor();
  assert.deepEqual(brokenErrors(page), []);
  await page.context().close();
});

test('the symbols line is split where a detail holds "," and "]"', async () => {
  const { parseSymbols } = await import('../../portal/js/pages/quarantine.js');
  assert.deepEqual(parseSymbols('GTUBE(100.00),SPF_NONE(0.10)[a.example]'), [
    { name: 'GTUBE', score: 100, detail: '' },
    { name: 'SPF_NONE', score: 0.1, detail: 'a.example' },
  ]);
  assert.deepEqual(parseSymbols('ATTACH_BLOCKED_EXT(0.00)[x.exe,y],z].exe],SPF_FAIL(-1.5)[b]'), [
    { name: 'ATTACH_BLOCKED_EXT', score: 0, detail: 'x.exe,y],z].exe' },
    { name: 'SPF_FAIL', score: -1.5, detail: 'b' },
  ]);
  assert.deepEqual(parseSymbols(''), []);
  assert.deepEqual(parseSymbols('A(1.00)[cut shor...'), [{ name: 'A', score: 1, detail: 'cut shor...' }]);
});
