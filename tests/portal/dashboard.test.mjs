// dashboard.test.mjs - the dashboard in Chromium against a real moatd
// (tests/portal/fixture.py): its empty states before any mail, then the
// hourly chart by outcome, the counts, the top threats and senders and
// the queue once mail was delivered, held and refused; Refresh shows new
// mail; nothing wider than the window; screenshots at 1280 and 390 px.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launch, login, newPage, screenshot, sendMail, startFixture, waitSink } from './lib.mjs';

let fx;
let browser;

before(async () => {
  fx = await startFixture();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await fx?.stop();
});

async function session(width) {
  const page = await newPage(browser, fx, { viewport: { width, height: 900 } });
  page.dialogs = [];
  page.on('dialog', async (d) => {
    page.dialogs.push(d.message());
    await d.dismiss();
  });
  await login(page, fx);
  await page.locator('h1', { hasText: 'Dashboard' }).waitFor();
  await page.locator('.dash .stats').first().waitFor();
  return page;
}

function brokenErrors(page) {
  return page.errors.filter((e) => /pageerror|Content Security Policy|Refused to/i.test(e));
}

async function noOverflow(page) {
  const [sw, w] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(sw <= w, `the page is ${sw} px wide in a ${w} px window`);
}

const stat = (page, label) =>
  page.locator('.statcard', { has: page.locator('div.muted', { hasText: new RegExp(`^${label}$`) }) })
    .locator('.stat').textContent();

test('before any mail: clear empty states', async () => {
  const page = await session(1280);
  await page.locator('.empty', { hasText: 'No mail in the last 24 hours.' }).waitFor();
  await page.locator('.empty', { hasText: 'No threats in the last 24 hours.' }).waitFor();
  await page.locator('.empty', { hasText: 'No senders in the last 24 hours.' }).waitFor();
  assert.equal(await stat(page, 'Messages, last 24 h'), '0');
  assert.equal(await page.locator('svg.chart').count(), 0);
  await screenshot(page, 'dashboard-empty-1280');
  assert.deepEqual(brokenErrors(page), []);
  await page.context().close();
});

test('the chart by outcome, counts, top threats and senders, queue; Refresh', async () => {
  assert.equal((await sendMail(fx, { subject: 'dash plain', to: `alice@${fx.domain}` })).code, 250);
  await waitSink(fx, { subject: 'dash plain' });
  for (const n of [1, 2])
    assert.equal((await sendMail(fx, { subject: `${fx.hold_prefix} dash ${n}`, from: 'threat@bad.example' })).code, 250);
  assert.equal((await sendMail(fx, { subject: `${fx.reject_prefix} dash`, from: 'threat@bad.example' })).code, 550);

  const page = await session(1280);
  const chart = page.locator('figure.chart-box', { has: page.locator('svg.chart') });
  await chart.waitFor();
  assert.match(await chart.locator('figcaption').textContent(), /Messages per hour by outcome/);
  // one stacked bar per outcome in the current hour: 1 delivered, 2 quarantined, 1 rejected
  const titles = await chart.locator('rect.bar title').allTextContents();
  assert.ok(titles.some((t) => / 1 Delivered$/.test(t)), titles.join(' | '));
  assert.ok(titles.some((t) => / 2 Quarantined$/.test(t)), titles.join(' | '));
  assert.ok(titles.some((t) => / 1 Rejected$/.test(t)), titles.join(' | '));
  assert.equal(await chart.locator('.legend li').count(), 5);
  assert.equal(await stat(page, 'Messages, last 24 h'), '4');
  assert.equal(await stat(page, 'Quarantined'), '2');
  assert.equal(await stat(page, 'Rejected'), '1');
  assert.equal(await stat(page, 'Held in quarantine now'), '2');

  const threats = page.locator('figure', { has: page.locator('figcaption', { hasText: 'Top threats' }) });
  assert.match(await threats.locator('ol.toplist').textContent(), /MOAT_RULE_QUARANTINE/);
  const senders = page.locator('figure', { has: page.locator('figcaption', { hasText: 'Top senders' }) });
  const top = senders.locator('ol.toplist li').first();
  assert.equal(await top.locator('.toplabel').textContent(), 'threat@bad.example');
  assert.equal(await top.locator('.topcount').textContent(), '3');
  // the bars got their widths (CSSOM, no inline style attribute in the markup)
  assert.equal(await top.locator('.topbar').evaluate((el) => el.style.width), '100%');
  await page.locator('section[aria-label="Delivery queue"]').waitFor();
  await noOverflow(page);
  await screenshot(page, 'dashboard-1280');

  // Refresh shows the next message
  assert.equal((await sendMail(fx, { subject: `${fx.hold_prefix} dash 3` })).code, 250);
  await page.locator('#dash-refresh').click();
  await page.waitForFunction(() => [...document.querySelectorAll('.statcard')].some(
    (c) => c.textContent.startsWith('Messages, last 24 h') && c.querySelector('.stat').textContent === '5'));
  assert.equal(await stat(page, 'Quarantined'), '3');
  assert.deepEqual(brokenErrors(page), []);
  assert.deepEqual(page.dialogs, []);
  await page.context().close();
});

test('the dashboard at phone width', async () => {
  const page = await session(390);
  await page.locator('svg.chart').waitFor();
  // the menu opens from its button
  await page.locator('#nav-toggle').click();
  await page.locator('#nav.open').waitFor();
  await page.locator('#nav-toggle').click();
  await noOverflow(page);
  await screenshot(page, 'dashboard-390');
  assert.deepEqual(brokenErrors(page), []);
  await page.context().close();
});
