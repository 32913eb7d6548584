// Tool calls in the page: approval cards and live tool cards, against the
// real relay on the openai backend and the suites' real llama.cpp server
// (tests/support/llama). A forwarding proxy (below) replaces each request's
// tools with ONE enum-constrained function and forces it with tool_choice,
// so the tiny model emits exactly the scripted call; a `text` step strips
// the tools and the model answers in words.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Relay, REPO, tempHome, launchBrowser, newPage, openChat, sendMessage, waitFor, missingPrerequisite } from './harness.mjs';

const LLAMA_SERVE = path.join(REPO, 'tests', 'support', 'llama', 'serve.sh');

function freePort() {
  return new Promise((resolve) => {
    const s = http.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function startLlama() {
  const port = await freePort();
  const child = spawn(LLAMA_SERVE, [String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  await waitFor(async () => {
    if (child.exitCode != null) throw new Error(`llama server exited:\n${log}`);
    try { return (await fetch(`http://127.0.0.1:${port}/v1/models`)).ok; } catch { return false; }
  }, { timeout: 120000, what: 'the llama server' });
  return { port, child };
}

/** The scripted proxy: `script` holds the steps, `bodies` what the relay sent. */
function startProxy(llamaPort) {
  const proxy = { script: [], bodies: [] };
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
      // Anything else (the model picker's GET /v1/models) passes through as it is.
      const up = await fetch(`http://127.0.0.1:${llamaPort}${req.url}`, { method: req.method });
      res.writeHead(up.status, { 'content-type': up.headers.get('content-type') || 'application/json', connection: 'close' });
      res.end(Buffer.from(await up.arrayBuffer()));
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    proxy.bodies.push(body);
    const step = proxy.script.shift() || { text: true };
    if (step.text) {
      delete body.tools;
      delete body.tool_choice;
      body.max_tokens = 6;
    } else {
      const properties = {};
      for (const [k, v] of Object.entries(step.args)) properties[k] = { type: typeof v === 'number' ? 'number' : 'string', enum: [v] };
      body.tools = [{ type: 'function', function: { name: step.call, description: 'forced by the test', parameters: { type: 'object', properties, required: Object.keys(step.args) } } }];
      body.tool_choice = { type: 'function', function: { name: step.call } };
      body.max_tokens = 400;
    }
    const up = await fetch(`http://127.0.0.1:${llamaPort}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    res.writeHead(up.status, { 'content-type': up.headers.get('content-type') || 'text/event-stream', connection: 'close' });
    for await (const c of up.body) res.write(c);
    res.end();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => { proxy.port = server.address().port; proxy.server = server; resolve(proxy); }));
}

/** Whether a live process has `marker` in its command line (bounded wait for a killed one to go). */
async function processAlive(marker) {
  const alive = () => fs.readdirSync('/proc').some((d) => {
    try {
      return fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(marker) && !fs.readFileSync(`/proc/${d}/stat`, 'utf8').includes(') Z ');
    } catch { return false; }
  });
  try { await waitFor(() => !alive(), { timeout: 5000, what: 'the process to go' }); return false; } catch { return true; }
}

const card = (page, i = 0) => page.locator('.tool-card').nth(i);
const status = async (page, i = 0) => card(page, i).getAttribute('data-status');

// LOOPCHAT_SKIP_LLAMA=1 skips it, as it does the Rust suites that need the llama server.
const SKIP = process.env.LOOPCHAT_SKIP_LLAMA === '1' ? 'LOOPCHAT_SKIP_LLAMA=1: no llama server' : false;

describe('tool cards', { skip: SKIP }, () => {
  const fx = {};
  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    fx.llama = await startLlama();
    fx.proxy = await startProxy(fx.llama.port);
    const home = await tempHome();
    fx.ws = await fsp.realpath(await fsp.mkdtemp(path.join(home, '..', 'ws-')));
    await fsp.writeFile(path.join(home, 'config.toml'), `
[tools]
workspace = "${fx.ws}"
approval_timeout_secs = 120
bash_output_limit_bytes = 65536
`, { mode: 0o600 });
    fx.relay = await Relay.start({
      home,
      env: { LOOPCHAT_AGENT: 'openai', LOOPCHAT_OPENAI_BASE_URL: `http://127.0.0.1:${fx.proxy.port}/v1`, LOOPCHAT_OPENAI_MODEL: 'tiny-llama' },
    });
    fx.browser = await launchBrowser();
  });
  after(async () => {
    await fx.browser?.close();
    await fx.relay?.cleanup();
    fx.proxy?.server.close();
    fx.llama?.child.kill('SIGTERM');
  });

  it('approve: the card shows the diff in every window, survives a reload, and the file is written', async () => {
    fx.proxy.script.push({ call: 'write', args: { path: 'ui/approved.txt', content: 'from the page' } }, { text: true });
    const page = await newPage(fx.browser);
    await openChat(page, fx.relay, { session: 'tools-a' });
    const other = await newPage(fx.browser);
    await openChat(other, fx.relay, { session: 'tools-a' });
    await sendMessage(page, 'write it');
    await waitFor(async () => (await status(page)) === 'waiting', { what: 'the approval card' });
    assert.match(await card(page).locator('.tool-diff').innerText(), /ui\/approved\.txt[\s\S]*\+from the page/);
    await waitFor(async () => (await status(other)) === 'waiting', { what: 'the card in the other window' });
    assert.equal(fs.existsSync(path.join(fx.ws, 'ui/approved.txt')), false);
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    await waitFor(async () => (await status(page)) === 'waiting', { what: 'the card after a reload' });
    await card(page).locator('.tool-approve').click();
    await waitFor(async () => (await status(page)) === 'ok', { what: 'ok' });
    await waitFor(async () => (await status(other)) === 'ok', { what: 'ok in the other window' });
    assert.equal(await card(other).locator('.tool-approval').isHidden(), true);
    assert.equal(fs.readFileSync(path.join(fx.ws, 'ui/approved.txt'), 'utf8'), 'from the page');
    assert.deepEqual(page.problems, []);
    await other.close();
    await page.close();
  });

  it('deny: nothing is written and the model is told', async () => {
    fx.proxy.script.push({ call: 'write', args: { path: 'denied.txt', content: 'no' } }, { text: true });
    const before = fx.proxy.bodies.length;
    const page = await newPage(fx.browser);
    await openChat(page, fx.relay, { session: 'tools-d' });
    await sendMessage(page, 'try to write');
    await waitFor(async () => (await status(page)) === 'waiting', { what: 'the approval card' });
    await card(page).locator('.tool-deny').click();
    await waitFor(async () => (await status(page)) === 'denied', { what: 'denied' });
    await waitFor(() => fx.proxy.bodies.length === before + 2, { what: 'the next request to the model' });
    const told = fx.proxy.bodies[before + 1].messages.filter((m) => m.role === 'tool');
    assert.match(told[0].content, /denied/);
    assert.equal(fs.existsSync(path.join(fx.ws, 'denied.txt')), false);
    await page.close();
  });

  it('allow for this session: the next call runs without asking; then Stop, the output cap and the timeout', async () => {
    fx.proxy.script.push(
      { call: 'bash', args: { command: 'echo one > one.txt' } },
      { call: 'bash', args: { command: 'echo two > two.txt' } },
      { text: true });
    const page = await newPage(fx.browser);
    await openChat(page, fx.relay, { session: 'tools-b' });
    await sendMessage(page, 'two commands');
    await waitFor(async () => (await status(page)) === 'waiting', { what: 'the approval card' });
    assert.match(await card(page).locator('.tool-command').innerText(), /\$ echo one > one\.txt/);
    await card(page).locator('.tool-allow-session').click();
    await waitFor(async () => (await status(page, 1)) === 'ok', { what: 'the second call, unasked' });
    assert.equal(fs.readFileSync(path.join(fx.ws, 'two.txt'), 'utf8'), 'two\n');

    // Stop during a long bash: its process group goes, the card says aborted.
    const marker = `loopchat-web-stop-${process.pid}`;
    fx.proxy.script.push({ call: 'bash', args: { command: `(exec -a ${marker} sleep 60) & echo started; wait` } });
    await sendMessage(page, 'long job');
    await waitFor(async () => /started/.test(await card(page, 2).locator('.tool-output').innerText()), { what: 'streamed output' });
    assert.equal(await status(page, 2), 'running');
    await page.click('#stop');
    await waitFor(async () => (await status(page, 2)) === 'aborted', { what: 'aborted' });
    assert.equal(await processAlive(marker), false, 'no process is left over');

    // The output cap and the timeout.
    fx.proxy.script.push(
      { call: 'bash', args: { command: 'yes loopchat' } },
      { call: 'bash', args: { command: 'echo begun; sleep 30', timeout: 1 } },
      { text: true });
    await sendMessage(page, 'caps');
    await waitFor(async () => (await status(page, 4)) === 'error', { what: 'the timed-out call', timeout: 30000 });
    assert.equal(await status(page, 3), 'error');
    await waitFor(async () => /Command killed: its output passed the 64\.0KB limit$/.test((await card(page, 3).locator('.tool-output').innerText()).trim()), { what: 'the cap in the result' });
    await waitFor(async () => /Command timed out after 1 seconds$/.test((await card(page, 4).locator('.tool-output').innerText()).trim()), { what: 'the timeout in the result' });
    assert.match(await card(page, 4).locator('.tool-duration').innerText(), /s$/);
    assert.deepEqual(page.problems, []);
    await page.close();
  });
});
