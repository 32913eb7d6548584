// The `pi` backend in Chromium: the REAL pi agent (tests/pi, 0.73.1) on the
// REAL llama.cpp server (tests/support/llama), run by the real relay. Between
// pi and the server a forwarding proxy (below) forces one tool call the way
// the tiny model can make one: `tool_choice` naming `bash` and a schema whose
// only argument is an enum of one command.
//
// LOOPCHAT_SKIP_LLAMA=1 skips the suite (as the Rust llama suites do).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Relay, REPO, launchBrowser, newPage, openChat, sendMessage, missingPrerequisite, tempHome, waitFor } from './harness.mjs';

const SKIP = process.env.LOOPCHAT_SKIP_LLAMA === '1';
const PI_BIN = path.join(REPO, 'tests', 'pi', 'node_modules', '.bin', 'pi');
const COMMAND = "printf 'tool ran'";

function freePort() {
  return new Promise((resolve) => {
    const s = http.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** The llama server: tests/support/llama/serve.sh PORT, until it answers. */
async function startLlama() {
  const port = await freePort();
  const child = spawn(path.join(REPO, 'tests', 'support', 'llama', 'serve.sh'), [String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log = (log + d).slice(-4000); });
  let exited = null;
  child.once('exit', (code) => { exited = code; });
  await waitFor(async () => {
    if (exited !== null) throw new Error(`the llama server exited (${exited}): ${log}`);
    const r = await fetch(`http://127.0.0.1:${port}/v1/models`).catch(() => null);
    return r && r.ok;
  }, { timeout: 120000, interval: 100, what: 'the llama server' });
  return { port, child };
}

/** Forwards to the server; `force()` makes the next user turn call bash. */
function startProxy(upstreamPort) {
  const state = { force: false, uncapped: false, requests: [] };
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    let body;
    try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { body = {}; }
    // pi asks for max_completion_tokens, which this server ignores; left
    // out (`uncapped`), a reply runs on for a few seconds, long enough to
    // stop it.
    if (body.max_completion_tokens && !state.uncapped) body.max_tokens = body.max_completion_tokens;
    // The server answers 500 to `content: null` beside tool_calls.
    for (const m of body.messages || []) if (m.role === 'assistant' && m.content == null) m.content = '';
    const last = (body.messages || []).at(-1);
    if (state.force && last && last.role === 'user' && Array.isArray(body.tools)) {
      state.force = false;
      body.tools = body.tools.filter((t) => t.function && t.function.name === 'bash');
      for (const t of body.tools) {
        t.function.parameters = { type: 'object', properties: { command: { type: 'string', enum: [COMMAND] } }, required: ['command'] };
      }
      body.tool_choice = { type: 'function', function: { name: 'bash' } };
    }
    state.requests.push(body);
    const data = Buffer.from(JSON.stringify(body));
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, path: req.url, method: req.method, headers: { 'content-type': 'application/json', 'content-length': data.length } }, (ur) => {
      res.writeHead(ur.statusCode, { 'content-type': ur.headers['content-type'] || 'application/json' });
      ur.pipe(res);
    });
    up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
    up.end(data);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, state, port: server.address().port })));
}

/** The pi processes the relay runs (pi titles itself "pi"). */
function piChildren(relayPid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try { stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8'); } catch { continue; }
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(rest[1]) !== relayPid || rest[0] === 'Z') continue;
    const cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    if (cmd === 'pi' || cmd.includes('--mode rpc')) out.push(Number(name));
  }
  return out;
}

describe('pi backend', { skip: SKIP && 'LOOPCHAT_SKIP_LLAMA=1' }, () => {
  let llama;
  let proxy;
  let relay;
  let browser;
  let page;
  let agentDir;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    assert.ok(fs.existsSync(PI_BIN), `${PI_BIN} is missing: run scripts/install-test-deps.sh`);
    llama = await startLlama();
    proxy = await startProxy(llama.port);
    agentDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'loopchat-pi-agent-'));
    await fsp.writeFile(path.join(agentDir, 'models.json'), JSON.stringify({ providers: { llama: {
      baseUrl: `http://127.0.0.1:${proxy.port}/v1`,
      api: 'openai-completions',
      apiKey: 'unused',
      compat: { supportsDeveloperRole: false, supportsReasoningEffort: false },
      models: [{ id: 'tiny-llama', contextWindow: 131072, maxTokens: 48 }],
    } } }));
    const home = await tempHome();
    relay = await Relay.start({ home, env: {
      LOOPCHAT_AGENT: 'pi',
      LOOPCHAT_PI_COMMAND: JSON.stringify([PI_BIN]),
      LOOPCHAT_PI_PROVIDER: 'llama',
      LOOPCHAT_PI_MODEL: 'tiny-llama',
      PI_CODING_AGENT_DIR: agentDir,
      PI_OFFLINE: '1',
      PI_TELEMETRY: '0',
    } });
    browser = await launchBrowser();
    page = await newPage(browser);
    await openChat(page, relay, { session: 'webpi' });
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
    proxy?.server.close();
    llama?.child.kill();
    if (agentDir) await fsp.rm(agentDir, { recursive: true, force: true });
  });

  it('streams a reply and a tool call as a live tool card', async () => {
    proxy.state.force = true;
    await sendMessage(page, 'run the tool');
    // The card appears while the run goes on, then ends ok with the output.
    const card = '.tool-card[data-status="ok"]';
    await page.waitForSelector(card, { timeout: 60000 });
    assert.equal(await page.$eval(`${card} .tool-name`, (e) => e.textContent), 'bash');
    assert.match(await page.$eval(`${card} .tool-args`, (e) => e.textContent), /printf 'tool ran'/);
    assert.equal(await page.$eval(`${card} .tool-output`, (e) => e.textContent.trim()), 'tool ran');
    // The run ends with the model's answer after the tool, streamed as text.
    await page.waitForFunction(() => !document.getElementById('app').classList.contains('running'), null, { timeout: 60000 });
    const stored = await page.$$eval('#messages .msg.assistant', (els) => els.map((e) => e.querySelector('.tool-card') ? 'card' : e.innerText.trim()));
    assert.equal(stored[0], 'card', 'the stored tool call renders as the same card');
    assert.ok(stored.at(-1).length > 0 && stored.at(-1) !== 'card', `a text answer after the tool: ${stored}`);
    // A reload draws the card from the transcript.
    await page.reload();
    await page.waitForSelector('#messages .tool-card .tool-name', { timeout: 15000 });
  });

  it('stops on abort', async () => {
    await openChat(page, relay, { session: 'webpi-stop' });
    proxy.state.uncapped = true;
    await sendMessage(page, 'a long story please');
    await page.waitForFunction(() => {
      const t = document.querySelector('.msg.live .stream-text');
      return t && t.textContent.length > 0;
    }, null, { timeout: 60000 });
    const pids = piChildren(relay.child.pid);
    await page.click('#stop');
    await page.waitForSelector('#messages .msg.assistant.stopped', { timeout: 30000 });
    proxy.state.uncapped = false;
    assert.deepEqual(piChildren(relay.child.pid), pids, 'pi keeps running after an abort');
  });

  it('survives a pi crash: a clear error, the message kept, the next turn works', async () => {
    await openChat(page, relay, { session: 'webpi-crash' });
    const others = new Set(piChildren(relay.child.pid));
    await sendMessage(page, 'first');
    await page.waitForFunction(() => !document.getElementById('app').classList.contains('running')
      && document.querySelectorAll('#messages .msg.assistant').length >= 1, null, { timeout: 60000 });
    proxy.state.uncapped = true;
    await sendMessage(page, 'this one crashes');
    await page.waitForFunction(() => {
      const t = document.querySelector('.msg.live .stream-text');
      return t && t.textContent.length > 0;
    }, null, { timeout: 60000 });
    const mine = piChildren(relay.child.pid).filter((p) => !others.has(p));
    assert.equal(mine.length, 1, 'one pi for the session');
    for (const p of mine) process.kill(p, 'SIGKILL');
    proxy.state.uncapped = false;
    await page.waitForSelector('.error-note', { timeout: 30000 });
    const note = await page.$eval('.error-note', (e) => e.textContent);
    assert.match(note, /pi was killed by a signal/);
    assert.match(note, /kept/);
    const users = await page.$$eval('#messages .msg.user .msg-body', (els) => els.map((e) => e.innerText.trim()));
    assert.ok(users.includes('this one crashes'), `the message is kept: ${users}`);
    await sendMessage(page, 'after the crash');
    await page.waitForFunction(() => [...document.querySelectorAll('#messages .msg.user .msg-body')].some((e) => e.innerText.trim() === 'after the crash'), null, { timeout: 60000 });
    await page.waitForFunction(() => !document.getElementById('app').classList.contains('running'), null, { timeout: 60000 });
    const last = await page.$$eval('#messages .msg', (els) => els.map((e) => e.className).at(-1));
    assert.match(last, /assistant/);
    assert.doesNotMatch(last, /error/);
  });
});
