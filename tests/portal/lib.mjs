// lib.mjs - what the portal's page tests share: a fixture (moatd with the
// portal, an SMTP sink, the Microsoft 365 emulator: tests/portal/fixture.py),
// headless Chromium through playwright-core, logging in, sending mail,
// reading what the sink received, screenshots.
//
//   import { test, before, after } from 'node:test';
//   import { startFixture, launch, login, sendMail } from './lib.mjs';
//
//   let fx, browser;
//   before(async () => { fx = await startFixture(); browser = await launch(); });
//   after(async () => { await browser?.close(); await fx?.stop(); });
//   test('dashboard', async () => {
//     const page = await newPage(browser, fx);
//     await login(page, fx);
//     ...
//   });
//
// Run them with `node tests/portal/run.mjs` (tests/run.sh does).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const OUT = path.join(ROOT, 'tests', 'out', 'portal');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PYTHON = '/usr/bin/python3';
const FIXTURE_START_MS = 60000;

/* What is missing to run the browser tests (empty: nothing). */
export function missingPrerequisites() {
  const missing = [];
  if (!fs.existsSync(CHROMIUM)) missing.push(`no Chromium at ${CHROMIUM}`);
  if (!fs.existsSync(path.join(HERE, 'node_modules', 'playwright-core', 'package.json')))
    missing.push('no tests/portal/node_modules (playwright-core)');
  return missing;
}

/* fn()'s first truthy value, polled every 100 ms until timeout ms; else an Error naming what. */
export async function waitFor(fn, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`never: ${what}${last ? ` (last error: ${last.message})` : ''}`);
}

let fixtures = 0;

/*
 * Start tests/portal/fixture.py: resolves to its JSON line (url, smtp_port,
 * user, password, sink_dir, emulator, data_dir, domain, hold_prefix,
 * reject_prefix, log) plus stop(), which closes its stdin and waits for
 * everything to stop. opts.conf: more moatd.conf lines.
 */
export function startFixture(opts = {}) {
  fs.mkdirSync(OUT, { recursive: true });
  const logPath = path.join(OUT, `fixture-${process.pid}-${++fixtures}.log`);
  const log = fs.openSync(logPath, 'w');
  const args = [path.join(HERE, 'fixture.py')];
  if (opts.conf) args.push('--conf', opts.conf);
  const child = spawn(PYTHON, args, { cwd: ROOT, stdio: ['pipe', 'pipe', log] });
  fs.closeSync(log);
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const fail = (why) => {
    let tail = '';
    try {
      tail = fs.readFileSync(logPath, 'utf8').slice(-3000);
    } catch {
      /* no log */
    }
    child.kill('SIGTERM');
    return new Error(`fixture: ${why}\n${tail}`);
  };
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(fail('no JSON line in time')), FIXTURE_START_MS);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      if (buf === null) return;
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = null;
      clearTimeout(timer);
      let info;
      try {
        info = JSON.parse(line);
      } catch {
        reject(fail(`not JSON: ${line.slice(0, 200)}`));
        return;
      }
      if (info.error) {
        reject(fail(info.error));
        return;
      }
      info.fixtureLog = logPath;
      info.stop = async () => {
        child.stdin.end();
        const killer = setTimeout(() => child.kill('SIGKILL'), 60000);
        await exited;
        clearTimeout(killer);
      };
      resolve(info);
    });
    exited.then((code) => {
      if (buf !== null) {
        clearTimeout(timer);
        reject(fail(`exited with ${code} before its JSON line`));
      }
    });
  });
}

/* Headless Chromium (Debian's) through playwright-core. */
export async function launch(opts = {}) {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox'],
    ...opts,
  });
}

/*
 * A page in a fresh context (its own cookies) whose relative URLs are the
 * portal's; page.errors collects uncaught exceptions, console errors
 * (CSP violations among them) and failed requests, for a test to assert
 * it stayed empty.
 */
export async function newPage(browser, fx, contextOpts = {}) {
  const context = await browser.newContext({ baseURL: fx.url, ...contextOpts });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`console: ${m.text()}`);
  });
  page.on('requestfailed', (r) =>
    page.errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  return page;
}

/*
 * Log in through the portal's form (#login-user, #login-password,
 * #login-submit): opens the portal unless the form is already there; the
 * login API's answer must be 200, then the form must go away. Returns
 * that answer's JSON (the session and its CSRF token).
 */
export async function login(page, fx, user = fx.user, password = fx.password) {
  if (!(await page.locator('#login-user').isVisible().catch(() => false))) {
    await page.goto(fx.url + '/');
  }
  await page.locator('#login-user').fill(user);
  await page.locator('#login-password').fill(password);
  const [resp] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/auth/login'),
    page.locator('#login-submit').click(),
  ]);
  if (resp.status() !== 200)
    throw new Error(`login: ${resp.status()} ${await resp.text()}`);
  await page.locator('#login-submit').waitFor({ state: 'hidden', timeout: 10000 });
  return resp.json();
}

/* An SMTP conversation on the fixture's port, one reply per command. */
class Smtp {
  constructor(sock) {
    this.sock = sock;
    this.buf = '';
    this.waiters = [];
    sock.setEncoding('utf8');
    sock.on('data', (d) => {
      this.buf += d;
      this.pump();
    });
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('SMTP connection closed')));
  }

  pump() {
    for (;;) {
      const m = this.buf.match(/^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/);
      if (!m || this.waiters.length === 0) return;
      this.buf = this.buf.slice(m[0].length);
      const text = m[0].trimEnd();
      const last = text.split('\n').pop();
      this.waiters.shift().resolve({ code: Number(last.slice(0, 3)), text });
    }
  }

  fail(e) {
    while (this.waiters.length) this.waiters.shift().reject(e);
  }

  reply() {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.pump();
    });
  }

  async cmd(line, want) {
    this.sock.write(line + '\r\n');
    const r = await this.reply();
    if (want && !want.includes(r.code)) throw new Error(`SMTP ${line}: ${r.text}`);
    return r;
  }
}

/*
 * Send one message to the fixture's moatd over plain SMTP. mail: subject,
 * from (envelope and From; default sender@remote.example), to (an address
 * or a list; default user@<fx.domain>), body, headers (more header fields,
 * {name: value}), or raw (the whole message, CRLF or LF). Resolves to the
 * final reply {code, text}: 250 delivered or quarantined ("hold..."
 * subjects), 550 rejected ("refuse..."); other refusals before DATA throw.
 */
export async function sendMail(fx, mail = {}) {
  const from = mail.from ?? 'sender@remote.example';
  const to = [].concat(mail.to ?? `user@${fx.domain}`);
  const subject = mail.subject ?? 'a test message';
  let msg = mail.raw;
  if (msg === undefined) {
    const id = `${Date.now()}.${Math.random().toString(36).slice(2)}@remote.example`;
    const extra = Object.entries(mail.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    msg = `From: <${from}>\r\nTo: <${to[0]}>\r\nSubject: ${subject}\r\n` +
          `Message-ID: <${id}>\r\nDate: ${new Date().toUTCString().replace('GMT', '+0000')}\r\n` +
          `MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n${extra}\r\n` +
          `${mail.body ?? 'hello\r\n'}`;
  }
  msg = msg.replace(/\r?\n/g, '\r\n');
  if (!msg.endsWith('\r\n')) msg += '\r\n';
  msg = msg.replace(/^\./gm, '..'); // dot-stuffing (RFC 5321 4.5.2)

  const sock = net.connect(fx.smtp_port, '127.0.0.1');
  sock.setTimeout(60000, () => sock.destroy(new Error('SMTP timeout')));
  const s = new Smtp(sock);
  try {
    let r = await s.reply();
    if (r.code !== 220) throw new Error(`SMTP greeting: ${r.text}`);
    await s.cmd('EHLO mail.remote.example', [250]);
    await s.cmd(`MAIL FROM:<${from}>`, [250]);
    for (const rcpt of to) await s.cmd(`RCPT TO:<${rcpt}>`, [250]);
    await s.cmd('DATA', [354]);
    sock.write(msg);
    r = await s.cmd('.');
    await s.cmd('QUIT').catch(() => {});
    return r;
  } finally {
    sock.destroy();
  }
}

/*
 * What the sink received, oldest first: [{file, raw, subject}]; raw is
 * the file as smtp-sink wrote it (its own X- lines, then the message).
 */
export function sinkMessages(fx) {
  if (!fs.existsSync(fx.sink_dir)) return [];
  return fs.readdirSync(fx.sink_dir).sort().map((file) => {
    const raw = fs.readFileSync(path.join(fx.sink_dir, file), 'utf8');
    const m = raw.match(/^Subject: ?(.*)$/im);
    return { file, raw, subject: m ? m[1].trim() : '' };
  });
}

/* Wait until the sink holds n messages (or one whose subject includes text, if text). */
export function waitSink(fx, { count = 1, subject, timeout = 20000 } = {}) {
  return waitFor(() => {
    const msgs = sinkMessages(fx);
    if (subject !== undefined) return msgs.find((m) => m.subject.includes(subject));
    return msgs.length >= count ? msgs : null;
  }, subject !== undefined ? `a message "${subject}" in the sink` : `${count} in the sink`,
  timeout);
}

/* A full-page screenshot in tests/out/portal/NAME.png; resolves to its path. */
export async function screenshot(page, name) {
  fs.mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, `${name.replace(/[^A-Za-z0-9._-]/g, '_')}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/*
 * Call the admin API the way the portal does, from Node (to set up or
 * check state): a session for the fixture's admin, then fetch with the
 * cookie and CSRF token. Resolves to {status, json, text, headers}.
 */
export async function api(fx, method, urlPath, body) {
  if (!fx.apiSession) {
    const r = await fetch(fx.url + '/api/v1/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: fx.user, password: fx.password }),
    });
    if (r.status !== 200) throw new Error(`api login: ${r.status} ${await r.text()}`);
    const cookie = r.headers.get('set-cookie').split(';')[0];
    fx.apiSession = { cookie, csrf: (await r.json()).csrf_token };
  }
  const headers = { Cookie: fx.apiSession.cookie };
  if (method !== 'GET') headers['X-CSRF-Token'] = fx.apiSession.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(fx.url + urlPath, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, text, headers: r.headers };
}

/* Flip the Microsoft 365 emulator's failure switches (tests/m365/emulator.py SWITCHES). */
export async function emulator(fx, switches) {
  const r = await fetch(fx.emulator + '/_emulator/control', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ set: switches }),
  });
  if (r.status !== 200) throw new Error(`emulator control: ${r.status} ${await r.text()}`);
  return r.json();
}

/* Show the portal page #/hash afresh (reloaded when it is the one shown); wait for ready. */
export async function openHash(page, fx, hash, ready) {
  const url = `${fx.url}/#/${hash}`;
  if (page.url() === url) await page.reload();
  else await page.goto(url);
  await page.locator(ready).first().waitFor();
}

/* The newest open dialog's button named name (a confirmation opens over a form's). */
export function dialogButton(page, name) {
  return page.locator('dialog[open]').last().getByRole('button', { name, exact: true });
}

/* Every dialog closed. */
export function noDialog(page) {
  return waitFor(async () => (await page.locator('dialog').count()) === 0, 'the dialogs closed');
}
