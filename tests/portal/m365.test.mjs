// m365.test.mjs - the Microsoft 365 wizard of the portal in headless
// Chromium against the Microsoft emulator (tests/m365/emulator.py), as the
// reference page has it: introduction → protections → the single-use code,
// copied with its button and entered in Microsoft's pop-up opened by
// "Configure" (code, Next, the admin account, Continue) → summary →
// check configuration → the green confirmation; then the tenant as the
// emulator has it. Also: Conditional Access blocking the sign-in shows its
// meaning and what to do; a tenant without Defender for Office 365 is not
// offered Safe Links; the PowerShell script; undo behind a confirm dialog.
// Every wizard step is kept as a screenshot in tests/out/portal/.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { emulator, launch, login, newPage, screenshot, startFixture } from './lib.mjs';

const BYPASS_RULE = 'moat: bypass clutter for gateway mail';
const WIDE = { width: 1280, height: 900 };

let fx;
let browser;
let page;

before(async () => {
  fx = await startFixture();
  browser = await launch();
  page = await newPage(browser, fx, { viewport: WIDE });
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: fx.url });
  await login(page, fx);
  await page.goto(fx.url + '/#/m365');
  await page.locator('#m365-wizard').waitFor();
  page.errors.length = 0; // from here on: this section's errors only
});

after(async () => {
  await browser?.close();
  await fx?.stop();
});

// The page's errors (uncaught exceptions, CSP violations, failed loads)
// but a 409 of asking a check just as the job ended: the page expects it.
function pageErrors() {
  return page.errors.filter((e) => !/status of 409 \(Conflict\)/.test(e));
}

async function noOverflow() {
  const [sw, w] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(sw <= w, `the page is ${sw} px wide in a ${w} px window`);
}

async function tenantState() {
  const r = await fetch(fx.emulator + '/_emulator/state');
  assert.equal(r.status, 200);
  return (await r.json()).objects;
}

async function theCode() {
  const code = page.locator('#m365-code');
  await code.waitFor();
  return (await code.textContent()).trim();
}

// What the admin does in Microsoft's pop-up: the code, Next, the admin
// account, Continue; then the pop-up says it may be closed.
async function signInInPopup(code, shotName) {
  const [popup] = await Promise.all([
    page.context().waitForEvent('page'),
    page.locator('#m365-configure').click(),
  ]);
  await popup.waitForLoadState();
  assert.match(popup.url(), /\/devicelogin$/);
  await popup.locator('input[name=otc]').fill(code);
  await popup.getByRole('button', { name: 'Next' }).click();
  await popup.getByRole('button', { name: /admin@contoso\.onmicrosoft\.com/ }).click();
  await popup.getByRole('button', { name: 'Continue' }).click();
  await popup.getByText('You may now close this window').waitFor();
  if (shotName) await screenshot(popup, shotName);
  await popup.close();
}

test('the wizard runs to the green confirmation and the tenant has the bypass-clutter rule', async () => {
  // Exchange lags behind: the first read-back is "pending", so the check step shows
  await emulator(fx, { apply_delay: 40 });
  await screenshot(page, 'm365-section');
  await page.locator('#m365-wizard').click();

  // 1. introduction: what, why, what it needs
  await page.getByRole('heading', { name: 'Introduction' }).waitFor();
  await page.getByText('must not be quarantined a second time').waitFor();
  await page.getByText('Exchange Administrator or Global Administrator').waitFor();
  await screenshot(page, 'm365-1-intro');
  // by keyboard: Enter on Next; focus goes to the new step's heading, Tab into the step
  await page.locator('#m365-next').focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Choose protections' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Choose protections');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'wz-p-antispam');

  // 2. protections: all offered (the emulator's tenant has Defender), all checked
  for (const name of ['Anti-spam', 'Anti-phishing', 'Anti-malware', 'Safe Links', 'Safe Attachments']) {
    const cb = page.getByRole('checkbox', { name, exact: true });
    assert.ok(await cb.isVisible(), name);
    assert.ok(await cb.isChecked(), name);
  }
  assert.ok(await page.getByRole('checkbox', { name: 'Bypass-clutter rule' }).isChecked());
  assert.ok(await page.getByRole('checkbox', { name: /Enhanced Filtering/ }).isDisabled());
  await page.getByText('Microsoft always quarantines malware').waitFor();
  await screenshot(page, 'm365-2-choose');
  await page.locator('#m365-start').click();

  // 3. authentication and execution: the code, its copy button, Configure's pop-up
  const code = await theCode();
  assert.match(code, /^[A-Z0-9]{6,}$/);
  await page.getByText(/The code works until/).waitFor();
  await screenshot(page, 'm365-3-code');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator('#m365-configure').waitFor();
  await noOverflow();
  await screenshot(page, 'm365-3-code-390');
  await page.setViewportSize(WIDE);
  await page.getByRole('button', { name: /^Copy code/ }).click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied, code);
  await signInInPopup(copied, 'm365-3-popup-signed-in');

  // 4. summary: each step in plain words with its cmdlet, what Microsoft does not allow
  await page.getByRole('heading', { name: 'Summary' }).waitFor();
  await page.locator('#m365-check:enabled').waitFor();
  await page.getByText('admin@contoso.onmicrosoft.com').first().waitFor();
  assert.ok(await page.locator('ol.plan li').count() >= 5);
  await page.locator('ol.plan li', { hasText: 'Create the bypass-clutter rule' })
    .filter({ hasText: 'New-TransportRule' }).waitFor();
  assert.equal(await page.locator('ol.plan .badge', { hasText: 'failed' }).count(), 0);
  await page.getByText('Microsoft always quarantines malware').first().waitFor();
  await screenshot(page, 'm365-4-summary');

  // 5. check configuration until Exchange shows every change
  await page.locator('#m365-check').click();
  const green = page.locator('.success.result');
  await page.getByRole('heading', { name: 'Check configuration' }).or(green).waitFor();
  if (!(await green.isVisible())) {
    await page.locator('table', { hasText: 'Bypass-clutter rule' }).or(green).waitFor();
    await screenshot(page, 'm365-5-check');
  }
  // "Check again" asks at once; moat also reads back by itself (m365_check_every)
  const again = page.locator('#m365-check-again:enabled');
  await again.or(green).waitFor();
  if (await again.isVisible()) await again.click().catch(() => {}); // gone if the job ended meanwhile

  // 6. done: the green confirmation, every item in place
  await green.waitFor({ timeout: 90000 });
  assert.match(await green.textContent(), /^Exchange Online is set up: /);
  const badges = await page.locator('tbody .badge').allTextContents();
  assert.ok(badges.length >= 5, badges.join());
  for (const b of badges) assert.ok(b === 'ok' || b === 'skipped', b);
  await screenshot(page, 'm365-6-done');

  // the tenant as the emulator has it
  const rule = (await tenantState()).TransportRule.find((r) => r.Name === BYPASS_RULE);
  assert.ok(rule, 'the bypass-clutter rule exists');
  assert.equal(Number(rule.SetSCL), -1);
  assert.equal(rule.SetHeaderName, 'X-MS-Exchange-Organization-BypassClutter');
  assert.equal(rule.SetHeaderValue, 'true');
  assert.equal(rule.State, 'Enabled');
  await emulator(fx, { apply_delay: 0 });

  // OK closes the wizard: the section lists the job and the rule
  await page.locator('#m365-ok').click();
  await page.locator('#m365-wizard').waitFor();
  await page.locator('tbody tr', { hasText: 'apply' }).filter({ hasText: 'done' }).first().waitFor();
  await page.locator('li[data-item="bypass-rule"]', { hasText: 'ok' }).waitFor();
  await screenshot(page, 'm365-section-after');
  assert.deepEqual(pageErrors(), []);
});

test('Conditional Access blocking the sign-in: the page says what it means and what to do', async () => {
  await emulator(fx, { conditional_access: true });
  try {
    await page.goto(fx.url + '/#/m365/wizard');
    await page.locator('#m365-next').click();
    await page.locator('#m365-start').click();
    await signInInPopup(await theCode());
    const err = page.locator('.error.result');
    await err.waitFor();
    const text = await err.textContent();
    assert.match(text, /Conditional Access policy of your tenant blocked the sign-in/);
    assert.match(text, /What to do/);
    assert.match(text, /exception/);
    assert.match(text, /AADSTS53003/);
    await page.getByRole('heading', { name: 'The wizard could not finish' }).waitFor();
    await screenshot(page, 'm365-6-error-conditional-access');
    await page.locator('#m365-ok').click();
    await page.locator('#m365-wizard').waitFor();
    assert.deepEqual(pageErrors(), []);
  } finally {
    await emulator(fx, { conditional_access: false });
  }
});

test('a tenant without Defender for Office 365 is not offered Safe Links or Safe Attachments', async () => {
  await emulator(fx, { defender: false });
  try {
    // read the tenant (changes nothing), through the same sign-in
    await page.goto(fx.url + '/#/m365');
    await page.locator('#m365-connect').click();
    await page.getByRole('heading', { name: 'Read the tenant' }).waitFor();
    await signInInPopup(await theCode());
    await page.locator('.success.result', { hasText: 'moat read the tenant' }).waitFor();
    await page.getByText('No: Safe Links and Safe Attachments are not offered').waitFor();
    await screenshot(page, 'm365-connect-no-defender');
    await page.locator('#m365-ok').click();
    await page.locator('#m365-wizard').click();
    await page.locator('#m365-next').click();
    await page.getByRole('heading', { name: 'Choose protections' }).waitFor();
    await page.getByText('Safe Links and Safe Attachments are not shown').waitFor();
    assert.equal(await page.getByRole('checkbox', { name: 'Safe Links' }).count(), 0);
    assert.equal(await page.getByRole('checkbox', { name: 'Safe Attachments' }).count(), 0);
    assert.ok(await page.getByRole('checkbox', { name: 'Anti-spam' }).isChecked());
    await screenshot(page, 'm365-2-choose-no-defender');
    assert.deepEqual(pageErrors(), []);
  } finally {
    await emulator(fx, { defender: true });
  }
});

test('the PowerShell script, and undo behind a confirm dialog', async () => {
  await page.goto(fx.url + '/#/m365');
  const card = page.getByRole('region', { name: 'PowerShell script' });
  await card.getByText('Choose what the script does').click();
  await card.getByRole('radio', { name: 'MX mode' }).check();
  await page.locator('#m365-ps-view').click();
  const dlg = page.getByRole('dialog', { name: 'PowerShell script' });
  await dlg.waitFor();
  const text = await dlg.locator('pre').textContent();
  assert.match(text, /New-InboundConnector/);
  assert.match(text, /X-MS-Exchange-Organization-BypassClutter/);
  await screenshot(page, 'm365-script');
  await page.keyboard.press('Escape');
  await dlg.waitFor({ state: 'detached' });

  await page.locator('#m365-undo').click();
  const confirm = page.getByRole('dialog').filter({ hasText: 'Undo everything moat changed' });
  await confirm.waitFor();
  await confirm.getByRole('button', { name: 'Undo' }).click();
  await page.getByRole('heading', { name: /Undo moat's changes/ }).waitFor();
  await signInInPopup(await theCode());
  await page.locator('.success.result', { hasText: 'Exchange Online is back as it was before moat' }).waitFor();
  await screenshot(page, 'm365-undo-done');
  assert.equal((await tenantState()).TransportRule.find((r) => r.Name === BYPASS_RULE), undefined);
  await page.locator('#m365-ok').click();
  await page.locator('#m365-wizard').waitFor();
  await page.locator('li[data-item="bypass-rule"]', { hasText: 'not there' }).waitFor();
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator('tbody tr', { hasText: 'undo' }).first().waitFor();
  await noOverflow();
  await screenshot(page, 'm365-section-390');
  await page.setViewportSize(WIDE);
  assert.deepEqual(pageErrors(), []);
});
