// Shared helpers for the end-to-end tests: the real server binary, a line-protocol TCP client,
// and headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WEB_TESTS = path.resolve(here, '..');

/** The server binary: $NATTER_SERVER_BIN (relative to web-tests/), else the debug build. */
export const SERVER_BIN = path.resolve(
  WEB_TESTS,
  process.env.NATTER_SERVER_BIN || '../target/debug/natter-server',
);

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** How long any single wait may take before the test fails. */
export const WAIT = 10_000;

// ------------------------------------------------------------------ server

/**
 * Starts natter-server on 127.0.0.1 (`port` 0 picks a free one) and resolves once it has said
 * where it listens. The returned object's `stop()` ends it (SIGTERM, then SIGKILL; `stop({ kill:
 * true })` kills it at once, as a crash would). `linger` is how many seconds a lost
 * connection's session waits to be resumed. `store` is `memory` (accounts and history for
 * this run only) or a `sqlite:PATH` from `tempStore()`, kept across runs; `args` are more flags.
 */
export async function startServer({ port = 0, store = 'memory', linger = 60, args = [] } = {}) {
  if (!fs.existsSync(SERVER_BIN)) {
    throw new Error(`no server binary at ${SERVER_BIN}: run \`cargo build -p natter-server\` in the workspace, or set NATTER_SERVER_BIN`);
  }
  const proc = spawn(SERVER_BIN, ['--shutdown-grace-secs', '1', '--linger-secs', String(linger), '--store', store, ...args, '127.0.0.1', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
  });
  const log = [];
  let exited = false;
  const exit = new Promise((resolve) => proc.once('exit', (code, signal) => {
    exited = true;
    resolve({ code, signal });
  }));
  const bound = new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        log.push(line);
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(line);
        if (m) resolve(Number(m[1]));
      }
    };
    proc.stdout.setEncoding('utf8').on('data', onData);
    proc.stderr.setEncoding('utf8').on('data', onData);
    proc.once('error', reject);
    exit.then(({ code, signal }) => reject(new Error(
      `natter-server (${SERVER_BIN}) exited (${code ?? signal}) before listening:\n${log.join('\n')}`,
    )));
  });
  const timer = setTimeout(() => proc.kill('SIGKILL'), WAIT);
  let boundPort;
  try {
    boundPort = await bound;
  } finally {
    clearTimeout(timer);
  }
  return {
    port: boundPort,
    url: `http://127.0.0.1:${boundPort}/`,
    log,
    proc,
    async stop({ kill = false } = {}) {
      if (exited) return;
      proc.kill(kill ? 'SIGKILL' : 'SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exit;
      clearTimeout(t);
    },
  };
}

/**
 * A SQLite store in a new temporary directory, for servers that must find what an earlier one
 * kept (the same `store` given to both). `remove()` deletes the directory.
 */
export function tempStore() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'natter-web-tests-'));
  return {
    store: `sqlite:${path.join(dir, 'natter.db')}`,
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

// ------------------------------------------------------------------ TCP client

/**
 * A client of the line protocol over plain TCP. `expect()` waits for the next line (after the
 * last one it matched) that equals a string or matches a RegExp.
 */
export async function tcpClient(port) {
  const client = await lineClient(port);
  client.send(''); // a blank first line: the server greets at once
  await client.expect(/^HELLO /);
  return client;
}

/**
 * An IRC client on the same port (the server tells it by its first bytes), registered as
 * `nick`: for what only IRC can do, such as clearing a topic.
 */
export async function ircClient(port, nick) {
  const client = await lineClient(port);
  client.send(`NICK ${nick}`);
  client.send(`USER ${nick} 0 * :${nick}`);
  await client.expect(/^:\S+ 001 /);
  return client;
}

/** A socket read line by line, with `expect()`, `send()` and `close()`. */
async function lineClient(port) {
  const sock = net.connect(port, '127.0.0.1');
  sock.setEncoding('utf8');
  const lines = [];
  let cursor = 0;
  let buf = '';
  let wake = () => {};
  sock.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i).replace(/\r$/, ''));
      buf = buf.slice(i + 1);
    }
    wake();
  });
  const closed = once(sock, 'close');
  sock.on('close', () => wake());
  sock.on('error', () => {}); // a reset shows up as 'close'
  await once(sock, 'connect');
  const client = {
    lines,
    send(line) {
      sock.write(`${line}\n`);
    },
    async expect(want, timeout = WAIT) {
      const matches = (l) => (want instanceof RegExp ? want.test(l) : l === want);
      const deadline = Date.now() + timeout;
      for (;;) {
        for (; cursor < lines.length; cursor++) {
          if (matches(lines[cursor])) return lines[cursor++];
        }
        const left = deadline - Date.now();
        if (left <= 0 || sock.destroyed) {
          throw new Error(`TCP client: no line ${want} within ${timeout} ms; got:\n${lines.join('\n')}`);
        }
        await new Promise((resolve) => {
          const t = setTimeout(resolve, left);
          wake = () => { clearTimeout(t); resolve(); };
        });
        wake = () => {};
      }
    },
    async close() {
      if (!sock.destroyed) sock.end();
      const t = setTimeout(() => sock.destroy(), 2_000);
      await closed;
      clearTimeout(t);
    },
  };
  return client;
}

/** A TCP client registered as `name`. */
export async function tcpUser(port, name) {
  const c = await tcpClient(port);
  c.send(`REGISTER ${name}`);
  await c.expect(`OK REGISTER ${name}`);
  return c;
}

/** A TCP client registered as `name` and holding the account `name` (password `password`). */
export async function tcpAccount(port, name, password = 'correct-horse') {
  const c = await tcpUser(port, name);
  c.send(`ACCOUNT CREATE ${password}`);
  await c.expect(`OK ACCOUNT CREATE ${name}`);
  return c;
}

// ------------------------------------------------------------------ browser

/**
 * Launches headless Chromium from Debian's package. Playwright gives it a fresh temporary
 * profile (--user-data-dir) of its own and removes it on close.
 */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Opens the page in a new browser context (its own storage: a separate person). Records
 * JavaScript dialogs and page errors so tests can assert there were none. `locale` and
 * `timezoneId` (as `en-GB`, `UTC`) set the browser's languages and time zone.
 */
export async function openPage(browser, server, { viewport = { width: 1280, height: 800 }, colorScheme = 'light', permissions, locale, timezoneId, beforeGoto } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, permissions, locale, timezoneId });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.dialogs = [];
  page.errors = [];
  page.on('dialog', (d) => {
    page.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  await beforeGoto?.(page);
  await page.goto(server.url);
  return page;
}

/** Types a name on the welcome form and waits until the page is registered under it. */
export async function register(page, name) {
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel('Your name').press('Enter');
  await connectedAs(page, name);
}

/** Opens the page and registers as `name`. */
export async function openUser(browser, server, name, opts) {
  const page = await openPage(browser, server, opts);
  await register(page, name);
  return page;
}

/** Signs into the account `name` from the welcome form. */
export async function signIn(page, name, password = 'correct-horse') {
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel(/^Password/).fill(password);
  await page.getByLabel(/^Password/).press('Enter');
  await connectedAs(page, name);
}

export async function connectedAs(page, name, timeout = WAIT) {
  await page.getByRole('status', { name: 'Connection' })
    .filter({ hasText: `Connected as ${name}` })
    .waitFor({ timeout });
}

/** The message box of the current conversation. */
export const composer = (page) => page.locator('#composer-input');

/** Types `text` in the message box and presses Enter. */
export async function say(page, text) {
  const box = composer(page);
  await box.fill(text);
  await box.press('Enter');
}

/** The visible conversation's log. */
export const messages = (page) => page.getByRole('log');

/** A chat message from `from` whose text is exactly `text`, in the visible conversation. */
export function chat(page, from, text) {
  return messages(page).locator('li.msg:not(.system)')
    .filter({ has: page.locator('.from').getByText(from, { exact: true }) })
    .filter({ has: page.locator('.text').getByText(text, { exact: true }) });
}

/** A system line containing `text` in the visible conversation. */
export function systemLine(page, text) {
  return messages(page).locator('li.system').filter({ hasText: text });
}

/** A person in the online list. */
export function online(page, name) {
  return page.getByRole('list', { name: 'Online users', includeHidden: true }).locator(`li[data-name="${name}"]`);
}

/** A conversation button in the side bar ("Everyone", "#room", a DM partner's name). */
export function convButton(page, label) {
  return page.locator('nav[aria-label="Conversations"] button.conv')
    .filter({ has: page.locator('.conv-name').getByText(label, { exact: true }) });
}

/** The heading of the conversation shown ("Everyone", "#room", "@ name"). */
export function heading(page, text) {
  return page.getByRole('heading', { name: text, exact: true });
}

/** A person in the member list of `room` (shown while the room is). */
export function member(page, room, name) {
  return page.getByRole('list', { name: `Members of ${room}` }).locator(`li[data-name="${name}"]`);
}

/** Opens a conversation from the side bar (on a phone, after opening the side bar). */
export async function openConv(page, label) {
  await openSidebar(page);
  await convButton(page, label).click();
}

/** On a phone, opens the side bar of conversations (it is always shown on a desktop). */
export async function openSidebar(page) {
  const toggle = page.getByRole('button', { name: /^Show conversations/ });
  if (await toggle.isVisible()) await toggle.click();
  await page.locator('#sidebar').waitFor();
}

/** On a phone, opens the people panel (the online list, a room's member list). */
export async function openPeople(page) {
  const toggle = page.getByRole('button', { name: 'Show people' });
  if (await toggle.isVisible()) await toggle.click();
  await page.locator('#people').waitFor();
}

/** On a phone, closes an open side bar or people panel with Esc, as its scrim says. */
export async function closePanels(page) {
  if (!(await page.locator('#scrim').isVisible())) return;
  await page.keyboard.press('Escape');
  await page.locator('#scrim').waitFor({ state: 'hidden' });
}

/** The viewport of a phone held upright. */
export const PHONE = { width: 375, height: 740 };

/** Each test that must work on both is run at these: a label and `openPage`'s viewport. */
export const WIDTHS = [['desktop', undefined], ['phone', PHONE]];

/** Waits until the element with id `id` has the keyboard focus. */
export async function expectFocused(page, id) {
  await page.waitForFunction((want) => document.activeElement?.id === want, id, { timeout: WAIT });
}

/** Waits until a locator matches nothing. */
export function gone(locator, timeout = WAIT) {
  return locator.waitFor({ state: 'detached', timeout });
}

/**
 * Routes a page's WebSockets through the test, which can hold back what the server says
 * (`hold()`) until `release()`: the page is connected but hears nothing, not even HELLO, as on
 * a network that stalls. Set up before the page loads (in `beforeGoto`).
 */
export async function stallable(page) {
  let held = null; // [socket, line] from the server kept back; null while lines pass
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    server.onMessage((line) => (held ? held.push([ws, line]) : ws.send(line)));
  });
  return {
    hold() {
      held = held || [];
    },
    release() {
      const lines = held || [];
      held = null;
      for (const [ws, line] of lines) ws.send(line);
    },
  };
}

/** The texts of the chat messages in the visible conversation, top to bottom. */
export function shownTexts(page) {
  return messages(page).locator('li.msg:not(.system) .text').allTextContents();
}

/** Asserts that each of `texts` is shown exactly once in the visible conversation. */
export async function shownOnce(page, texts) {
  const shown = await shownTexts(page);
  for (const t of texts) {
    assert.equal(shown.filter((s) => s === t).length, 1, `"${t}" once in:\n${shown.join('\n')}`);
  }
}

/**
 * Records the lines a page sends on its WebSockets (pass as `beforeGoto`'s work, or call before
 * the page connects): an array that fills as it goes.
 */
export function sentLines(page) {
  const sent = [];
  page.on('websocket', (ws) => ws.on('framesent', (f) => sent.push(String(f.payload))));
  return sent;
}

// ------------------------------------------------------------------ a test file's frame

/**
 * One browser for a test file and, per test, what to end whatever happens (servers, pages,
 * TCP clients): each test says `t.after(h.cleanup)`. Call once at a test file's top level.
 */
export function harness() {
  const cleanups = [];
  const h = {
    browser: null,
    /** Runs `fn` at the end of the current test, whatever happens. */
    defer(fn) {
      cleanups.push(fn);
    },
    async cleanup() {
      while (cleanups.length) {
        try {
          await cleanups.pop()();
        } catch {
          // Keep cleaning up.
        }
      }
    },
    async server(opts) {
      const s = await startServer(opts);
      h.defer(() => s.stop());
      return s;
    },
    /** A SQLite store in a temporary directory, removed after the test (and its servers). */
    store() {
      const t = tempStore();
      h.defer(t.remove);
      return t.store;
    },
    async page(srv, opts) {
      const page = await openPage(h.browser, srv, opts);
      h.defer(() => page.context().close());
      return page;
    },
    async user(srv, name, opts) {
      const page = await h.page(srv, opts);
      await register(page, name);
      return page;
    },
    async tcp(srv, name) {
      const c = await tcpUser(srv.port, name);
      h.defer(() => c.close());
      return c;
    },
    async irc(srv, nick) {
      const c = await ircClient(srv.port, nick);
      h.defer(() => c.close());
      return c;
    },
    async account(srv, name, password) {
      const c = await tcpAccount(srv.port, name, password);
      h.defer(() => c.close());
      return c;
    },
  };
  before(async () => {
    h.browser = await launchBrowser();
  });
  after(async () => {
    await h.cleanup();
    await h.browser?.close();
  });
  return h;
}

/** No JavaScript dialog opened and no error was thrown in the page. */
export function noScriptRan(page) {
  assert.deepEqual(page.dialogs, [], 'no dialog may open');
  assert.deepEqual(page.errors, [], 'no page error');
}
