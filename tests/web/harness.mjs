// Shared pieces of the web UI end-to-end tests: start/stop real relays in
// unique temp homes, a cuttable TCP proxy (a stand-in for a flaky link or an
// SSH tunnel), pi-format stores, and one Chromium per test file.
//
// The relay is target/debug/loopchat (LOOPCHAT_BIN overrides; build it with
// `cargo build -p loopchat-relay`). There is no stand-in: every suite runs
// the real relay.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const ARTIFACTS = path.join(REPO, 'tests', 'artifacts');
export const RELAY_BIN = process.env.LOOPCHAT_BIN || path.join(REPO, 'target', 'debug', 'loopchat');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
];

/** Why the suite cannot run here, or null. */
export function missingPrerequisite() {
  if (!fs.existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  if (!fs.existsSync(RELAY_BIN)) return `no relay binary at ${RELAY_BIN} (cargo build -p loopchat-relay)`;
  return null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value (not a sleep used as synchronisation: it waits for a condition). */
export async function waitFor(fn, { timeout = 15000, interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(interval);
  }
}

export async function tempHome(prefix = 'loopchat-web-') {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  await fsp.chmod(dir, 0o700);
  return dir;
}

/**
 * Write a pi/Clawdis-format store: `sessions` maps key → array of
 * {role, content, timestamp?, id?} (or a function (i) => message with `count`).
 * Returns key → [{id, ...}] as written.
 */
export async function writeStore(home, sessions) {
  const dir = path.join(home, 'sessions');
  await fsp.mkdir(dir, { recursive: true });
  const index = {};
  const written = {};
  let t = Date.UTC(2026, 0, 1);
  for (const [key, spec] of Object.entries(sessions)) {
    const sessionId = crypto.randomUUID();
    const msgs = Array.isArray(spec) ? spec : Array.from({ length: spec.count }, (_, i) => spec.make(i));
    const lines = [JSON.stringify({ type: 'session', id: sessionId, timestamp: new Date(t).toISOString() })];
    written[key] = [];
    for (const m of msgs) {
      t += 1000;
      const id = m.id || crypto.randomUUID();
      const timestamp = m.timestamp || new Date(t).toISOString();
      const message = { role: m.role, content: m.content };
      if (m.stopReason) message.stopReason = m.stopReason;
      lines.push(JSON.stringify({ type: 'message', id, timestamp, message }));
      written[key].push({ id, timestamp, ...message });
    }
    await fsp.writeFile(path.join(dir, `${sessionId}.jsonl`), lines.join('\n') + '\n');
    index[key] = { sessionId, updatedAt: spec.updatedAt || t, thinkingLevel: 'off' };
  }
  await fsp.writeFile(path.join(dir, 'sessions.json'), JSON.stringify(index, null, 2));
  return written;
}

/** A running relay in its own home. */
export class Relay {
  constructor({ home, env = {} }) {
    this.home = home;
    this.env = env;
    this.child = null;
    this.info = null;
    this.logFile = path.join(home, 'relay-test.log');
    this.starts = 0;
  }

  static async start(opts = {}) {
    const home = opts.home || await tempHome();
    if (opts.store) await writeStore(home, opts.store);
    const relay = new Relay({ home, env: opts.env || {} });
    await relay.start();
    return relay;
  }

  get port() { return this.info.port; }
  get token() { return this.info.token; }
  get origin() { return `http://127.0.0.1:${this.info.port}`; }

  async start() {
    const discovery = path.join(this.home, 'relay.json');
    await fsp.rm(discovery, { force: true });
    // First start: a random port. A restart names no port, so the relay takes
    // the one this home used last (what brings open pages and tunnels back).
    const portArgs = this.starts === 0 ? ['--port', '0'] : [];
    const args = ['serve', '--home', this.home, ...portArgs];
    const out = fs.openSync(this.logFile, 'a');
    this.child = spawn(RELAY_BIN, args, {
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...this.env, LOOPCHAT_HOME: this.home },
      stdio: ['ignore', 'pipe', out],
    });
    fs.closeSync(out);
    this.starts += 1;
    const child = this.child;
    // The readiness rule of every launcher (CONTRIBUTING.md): the relay
    // prints its URL line once it listens and has written relay.json.
    const ready = new Promise((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => reject(new Error(`relay printed no URL line within 30 s; log:\n${this.log().slice(-3000)}`)), 30000);
      const onData = (chunk) => {
        seen += chunk;
        if (!seen.includes('\n')) return;
        clearTimeout(timer);
        child.stdout.off('data', onData);
        child.stdout.resume(); // drained, so the relay never blocks on a full pipe
        resolve();
      };
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`relay exited early (${JSON.stringify({ code, signal })}); log:\n${this.log().slice(-3000)}`));
      });
    });
    try {
      await ready;
      const d = JSON.parse(fs.readFileSync(discovery, 'utf8'));
      if (d.pid !== child.pid) throw new Error(`relay.json names pid ${d.pid}, not the relay started (${child.pid})`);
      this.info = d;
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    return this;
  }

  log() {
    try { return fs.readFileSync(this.logFile, 'utf8'); } catch { return ''; }
  }

  /** Stop the relay: SIGTERM (clean shutdown), or SIGKILL with `hard` (a crash). */
  async stop({ hard = false } = {}) {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill(hard ? 'SIGKILL' : 'SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
    await gone;
    clearTimeout(timer);
    this.child = null;
  }

  async restart(opts) {
    const before = this.info.port;
    await this.stop(opts);
    await this.start();
    return this.checkSamePort(before);
  }

  checkSamePort(before) {
    if (this.info.port !== before) throw new Error(`relay came back on port ${this.info.port}, not ${before}`);
    return this;
  }

  /**
   * The browser entry URL: the token in the fragment (`#token=…`), which no
   * server sees; the page keeps it in its origin's localStorage. `token` may
   * be false (no token) or a string (that token).
   */
  pageUrl({ session, token = true, port } = {}) {
    const u = new URL(`http://127.0.0.1:${port || this.port}/webchat/`);
    if (session) u.searchParams.set('session', session);
    if (token) u.hash = `token=${typeof token === 'string' ? token : this.token}`;
    return u.href;
  }

  /** `loopchat token rotate` on this relay's home; afterwards `token` is the new one. */
  async rotateToken() {
    await new Promise((resolve, reject) => {
      const child = spawn(RELAY_BIN, ['token', 'rotate'], {
        env: { ...process.env, LOOPCHAT_HOME: this.home },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d) => { stderr += d; });
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`token rotate exited ${code}: ${stderr}`))));
    });
    const d = JSON.parse(fs.readFileSync(path.join(this.home, 'relay.json'), 'utf8'));
    if (d.token === this.info.token) throw new Error('token rotate left relay.json unchanged');
    this.info = d;
    return d.token;
  }

  /** A request as a script would make it (Bearer token). */
  async api(method, p, body, headers = {}) {
    const res = await fetch(`${this.origin}/webchat/${p}`, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* SSE or empty */ }
    return { status: res.status, json, text, headers: res.headers };
  }

  async send(text, session = 'main', extra = {}) {
    const r = await this.api('POST', 'rpc', { text, session, ...extra });
    if (r.status !== 200) throw new Error(`rpc ${r.status}: ${r.text}`);
    return r.json;
  }

  /** Start an rpc without waiting for its answer (for runs that stream for a while). */
  sendInBackground(text, session = 'main', extra = {}) {
    return this.api('POST', 'rpc', { text, session, ...extra });
  }

  async notify(n) {
    return this.api('POST', 'notify', n);
  }

  async cleanup() {
    await this.stop();
    if (!process.env.KEEP_HOMES) await fsp.rm(this.home, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy on its own loopback port in front of the relay: `cut()` drops
 * every connection and refuses new ones (a lost link), `restore()` accepts
 * again on the same port. The page works through it like through a tunnel.
 */
export class Proxy {
  /**
   * @param {number} targetPort
   * @param {{ hold?: (chunk: string) => boolean }} [o]  a request that starts like this waits
   *   (with its connection) until `release()`; if its client closed meanwhile, it is dropped unsent
   */
  constructor(targetPort, { hold } = {}) {
    this.targetPort = targetPort;
    this.hold = hold;
    this.sockets = new Set();
    this.server = null;
    this.port = 0;
    this.held = [];
    this.heldOne = () => {};
    this.whenHeld = new Promise((resolve) => { this.heldOne = resolve; });
  }

  static async start(targetPort, options) {
    const p = new Proxy(targetPort, options);
    await p.listen();
    return p;
  }

  listen() {
    return new Promise((resolve, reject) => {
      const server = net.createServer((client) => {
        const upstream = net.connect(this.targetPort, '127.0.0.1');
        this.sockets.add(client);
        this.sockets.add(upstream);
        const drop = () => { client.destroy(); upstream.destroy(); this.sockets.delete(client); this.sockets.delete(upstream); };
        client.on('error', drop);
        upstream.on('error', drop);
        client.on('close', drop);
        upstream.on('close', drop);
        upstream.pipe(client);
        if (!this.hold) return client.pipe(upstream);
        // Requests on one connection come one at a time, so a held one holds what follows it.
        let holding = null;
        client.on('data', (chunk) => {
          if (holding) return holding.chunks.push(chunk);
          if (this.hold(chunk.toString('latin1'))) {
            holding = { client, chunks: [chunk], forward: () => { for (const c of holding.chunks) upstream.write(c); holding = null; } };
            this.held.push(holding);
            return this.heldOne();
          }
          upstream.write(chunk);
        });
        client.on('end', () => upstream.end());
      });
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        this.port = server.address().port;
        this.server = server;
        resolve();
      });
    });
  }

  /** Forwards the held requests whose clients are still connected. */
  release() {
    for (const h of this.held.splice(0)) {
      if (!h.client.destroyed && !h.client.readableEnded) h.forward();
    }
  }

  async cut() {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise((r) => server.close(r));
  }

  async restore() {
    if (!this.server) await this.listen();
  }

  async close() {
    await this.cut();
  }
}

/**
 * A suite's usual fixture: one relay and one browser for all its tests,
 * started in `before` (failing when a prerequisite is missing) and stopped
 * in `after`. Call it inside `describe`; read `relay` and `browser` from the
 * returned object in the tests.
 * @returns {{ relay: Relay, browser: import('playwright-core').Browser }}
 */
export function suiteFixture(relayOptions) {
  const fixture = /** @type {any} */ ({});
  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    fixture.relay = await Relay.start(relayOptions);
    fixture.browser = await launchBrowser();
  });
  after(async () => {
    await fixture.browser?.close();
    await fixture.relay?.cleanup();
  });
  return fixture;
}

/**
 * For the benchmarks: wait for the page's `window.__paintedPromise` (set by
 * the bench's init script) and return its value, through the DevTools
 * protocol. Playwright's waitForFunction and evaluate first install their
 * utility script in the page, ~20 ms of parsing on the page's main thread that
 * would land inside the time being measured.
 */
export async function paintedViaCdp(client, { timeout = 30000 } = {}) {
  const { result, exceptionDetails } = await client.send('Runtime.evaluate', {
    expression: `Promise.race([window.__paintedPromise, new Promise((_, no) => setTimeout(() => no(new Error('not painted in ${timeout} ms')), ${timeout}))])`,
    awaitPromise: true,
    returnByValue: true,
  });
  if (exceptionDetails) throw new Error(`bench: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`);
  return result.value;
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/**
 * The welcome tour's "completed" marker for this build (`welcomeVersion:relayVersion`),
 * read from where those are defined: proto's WELCOME_VERSION and the workspace version.
 */
export const WELCOME_DONE = (() => {
  const lib = fs.readFileSync(path.join(REPO, 'proto', 'src', 'lib.rs'), 'utf8');
  const welcome = /pub const WELCOME_VERSION: u32 = (\d+);/.exec(lib);
  const cargo = fs.readFileSync(path.join(REPO, 'Cargo.toml'), 'utf8');
  const version = /\[workspace\.package\][^[]*?\nversion = "([^"]+)"/.exec(cargo);
  if (!welcome || !version) throw new Error('cannot read WELCOME_VERSION or the workspace version');
  return `${welcome[1]}:${version[1]}`;
})();

/**
 * Every page of `context` starts as a browser that has seen the welcome tour
 * (the suites that are not about the tour open the chat directly).
 */
export async function asReturningUser(context) {
  await context.addInitScript((done) => {
    try {
      if (!localStorage.getItem('loopchat.welcome.done')) localStorage.setItem('loopchat.welcome.done', JSON.stringify(done));
    } catch {
      // about:blank and other opaque origins have no storage
    }
  }, WELCOME_DONE);
}

/**
 * A new context + page that records page errors and CSP violations;
 * `page.problems` lists them (tests assert it stays empty). `welcome: true`
 * leaves the welcome tour to come up as on a first visit.
 */
export async function newPage(browser, { viewport = { width: 1280, height: 800 }, colorScheme = 'light', welcome = false, ...ctx } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, ...ctx });
  if (!welcome) await asReturningUser(context);
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    const t = msg.text();
    if (/Content Security Policy|Refused to/i.test(t)) page.problems.push(`csp: ${t}`);
  });
  return page;
}

/** Open the UI through the token link (`#token=`) and wait until the session is loaded. */
export async function openChat(page, relay, { session, port } = {}) {
  await page.goto(relay.pageUrl({ session, port }));
  await page.waitForSelector('#app[data-state="ready"]', { timeout: 15000 });
  await waitForConnected(page);
}

export async function waitForConnected(page, timeout = 15000) {
  await page.waitForFunction(() => document.getElementById('banner').hidden && document.getElementById('app').dataset.state === 'ready' && !document.getElementById('app').classList.contains('offline'), null, { timeout });
}

/** Type a message in the composer and press Enter. */
export async function sendMessage(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

/** Texts of the stored messages currently in the DOM, in order, by role. */
export async function transcriptTexts(page, role) {
  return page.$$eval(`#messages .msg${role ? `.${role}` : ''} .msg-body`, (els) => els.map((e) => e.innerText.trim()));
}

export async function screenshot(page, name) {
  await fsp.mkdir(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** A minimal valid PNG of w×h pixels in one colour (for attachment tests). */
export function pngBuffer(w = 8, h = 8, rgb = [79, 70, 229]) {
  const row = Buffer.alloc(1 + w * 3);
  for (let x = 0; x < w; x++) row.set(rgb, 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c;
}

/** Parse the relay's SSE events endpoint for a short while (script-side view of the log). */
export async function readEvents(relay, session, since = 0, { until, timeout = 10000 } = {}) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeout);
  const events = [];
  try {
    const res = await fetch(`${relay.origin}/webchat/events?session=${encodeURIComponent(session)}&since=${since}`, {
      headers: { Authorization: `Bearer ${relay.token}`, Accept: 'text/event-stream' },
      signal: ctl.signal,
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
        if (data) {
          const ev = JSON.parse(data);
          events.push(ev);
          if (until && until(ev, events)) { ctl.abort(); return events; }
        }
      }
    }
  } catch (err) {
    if (err.name !== 'AbortError') throw err;
  } finally {
    clearTimeout(timer);
  }
  return events;
}
