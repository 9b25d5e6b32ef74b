// shell.test.mjs - the portal's shell: a wrong password, log in, log out,
// a session that ends while a page is open, keyboard navigation.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launch, login, newPage, screenshot, startFixture } from './lib.mjs';

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

test('a wrong password is refused in words; the right one opens the dashboard', async () => {
  const page = await newPage(browser, fx);
  await page.goto(fx.url + '/');
  await page.locator('#login-user').fill(fx.user);
  await page.locator('#login-password').fill('not the password');
  await page.locator('#login-password').press('Enter');
  await page.getByRole('alert').getByText('Wrong user or password.').waitFor();
  assert.equal(await page.locator('#login-password').inputValue(), '', 'the password is cleared');
  await screenshot(page, 'login-refused-1280');
  await login(page, fx);
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  assert.match(page.url(), /#\/dashboard$/);
  assert.equal(await page.locator('#whoami').textContent(), fx.user);
  assert.deepEqual(page.errors.filter((e) => !e.includes('401')), []);
});

test('log out shows the login again, and the API no longer answers that session', async () => {
  const page = await newPage(browser, fx);
  await login(page, fx);
  await page.locator('#logout').click();
  await page.getByText('You are logged out.').waitFor();
  assert.equal(await page.locator('#nav').isVisible(), false);
  const r = await page.evaluate(async () => (await fetch('/api/v1/auth/session')).status);
  assert.equal(r, 401);
});

test('a session that ends while a page is open leads back to the login, then on', async () => {
  const page = await newPage(browser, fx);
  const s = await login(page, fx);
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  // the session ends behind the page's back (another tab logs out)
  const cookies = await page.context().cookies();
  const cookie = cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  const out = await fetch(fx.url + '/api/v1/auth/logout', {
    method: 'POST',
    headers: { Cookie: cookie, 'X-CSRF-Token': s.csrf_token, 'Content-Type': 'application/json' },
    body: '{}',
  });
  assert.equal(out.status, 200);
  await page.locator('#nav-quarantine').click();
  await page.getByText('Your session has ended. Log in again to go on.').waitFor();
  await screenshot(page, 'session-ended-1280');
  await login(page, fx);
  // back where the admin was going
  await page.getByRole('heading', { name: 'Quarantine' }).waitFor();
});

test('the keyboard reaches the sections and opens them', async () => {
  const page = await newPage(browser, fx);
  await login(page, fx);
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  await page.locator('#nav-tracking').focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Tracking' }).waitFor();
  assert.equal(await page.locator('#nav-tracking').getAttribute('aria-current'), 'page');
  // an unknown section falls back to the dashboard
  await page.goto(fx.url + '/#/nowhere');
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
});
