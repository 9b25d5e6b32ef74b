// smoke.test.mjs - the harness itself: the fixture comes up, Chromium opens
// the portal, its first answer carries the security header fields, the
// page is moat's, a screenshot is kept; mail goes through to the sink and
// a held message is held; the emulator takes its switches.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';

import {
  api, emulator, launch, newPage, screenshot, sendMail, startFixture, waitFor, waitSink,
} from './lib.mjs';

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; " +
  "base-uri 'none'";

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

test('chromium opens the portal with its security header fields', async () => {
  const page = await newPage(browser, fx);
  const resp = await page.goto(fx.url + '/');
  assert.equal(resp.status(), 200);
  const h = resp.headers();
  assert.equal(h['content-security-policy'], CSP);
  assert.equal(h['x-content-type-options'], 'nosniff');
  assert.equal(h['x-frame-options'], 'DENY');
  assert.equal(h['referrer-policy'], 'no-referrer');
  assert.equal(h['cross-origin-opener-policy'], 'same-origin');
  assert.match(h['content-type'], /^text\/html/);
  assert.match(await page.title(), /moat/i);
  const file = await screenshot(page, 'smoke');
  assert.ok(fs.statSync(file).size > 0);
  await page.context().close();
});

test('mail is delivered to the sink, held, or refused', async () => {
  let r = await sendMail(fx, { subject: 'smoke plain', to: `alice@${fx.domain}` });
  assert.equal(r.code, 250, r.text);
  const got = await waitSink(fx, { subject: 'smoke plain' });
  assert.match(got.raw, /X-Moat-Verdict/i);

  r = await sendMail(fx, { subject: `${fx.hold_prefix} smoke`, from: 'bad@remote.example' });
  assert.equal(r.code, 250, r.text);
  const held = await waitFor(async () => {
    const q = await api(fx, 'GET', '/api/v1/quarantine?state=held');
    return q.json.items.find((m) => m.subject === `${fx.hold_prefix} smoke`);
  }, 'the held message');
  assert.equal(held.sender, 'bad@remote.example');

  r = await sendMail(fx, { subject: `${fx.reject_prefix} smoke` });
  assert.equal(r.code, 550, r.text);
});

test('the emulator takes its switches', async () => {
  const r = await emulator(fx, { throttle: 1 });
  assert.equal(r.switches.throttle, 1);
  await emulator(fx, { throttle: 0 });
});
