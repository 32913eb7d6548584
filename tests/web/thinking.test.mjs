// Thinking: the level selector (sent on rpc, remembered per session) and
// thinking text shown collapsible.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Relay, launchBrowser, newPage, openChat, sendMessage, missingPrerequisite, tempHome, writeStore } from './harness.mjs';

describe('thinking', () => {
  let relay;
  let browser;
  let page;
  const rpcBodies = [];

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    const home = await tempHome();
    await writeStore(home, {
      deep: [
        { role: 'user', content: 'why is the sky blue?' },
        { role: 'assistant', content: [
          { type: 'thinking', thinking: 'Rayleigh scattering goes with the inverse fourth power of wavelength.' },
          { type: 'text', text: 'Because of **Rayleigh** scattering.' },
        ] },
      ],
    });
    relay = await Relay.start({ home });
    browser = await launchBrowser();
    page = await newPage(browser);
    page.on('request', (r) => {
      if (r.url().endsWith('/webchat/rpc') && r.method() === 'POST') rpcBodies.push(JSON.parse(r.postData()));
    });
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('offers off/minimal/low/medium/high and sends the choice with each message', async () => {
    await openChat(page, relay, { session: 'think-a' });
    const options = await page.$$eval('#thinking option', (os) => os.map((o) => o.value));
    assert.deepEqual(options, ['off', 'minimal', 'low', 'medium', 'high']);
    assert.equal(await page.inputValue('#thinking'), 'off');
    await page.selectOption('#thinking', 'high');
    await sendMessage(page, 'think hard');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: think hard');
    const body = rpcBodies.at(-1);
    assert.equal(body.thinking, 'high');
    assert.equal(body.session, 'think-a');
    assert.equal(body.text, 'think hard');
    assert.match(body.id, /^[0-9a-f-]{36}$/, 'every send carries a client uuid');
  });

  it('remembers the level per session across reloads and switches', async () => {
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    assert.equal(await page.inputValue('#thinking'), 'high');
    await page.click('#new-chat');
    await page.waitForSelector('#empty:not([hidden])');
    assert.equal(await page.inputValue('#thinking'), 'off', 'a new session starts at its own level');
    await page.selectOption('#thinking', 'low');
    await page.goBack();
    await page.waitForFunction(() => new URL(location.href).searchParams.get('session') === 'think-a');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: think hard');
    assert.equal(await page.inputValue('#thinking'), 'high');
    await page.goForward();
    await page.waitForSelector('#empty:not([hidden])');
    assert.equal(await page.inputValue('#thinking'), 'low');
  });

  it('shows stored thinking parts collapsed, openable, as text', async () => {
    await openChat(page, relay, { session: 'deep' });
    const block = page.locator('#messages .msg.assistant details.thinking-block');
    await block.waitFor();
    assert.equal(await block.evaluate((d) => d.open), false, 'collapsed by default');
    assert.equal(await block.locator('summary').innerText(), 'Thinking');
    assert.equal(await block.locator('.thinking-text').isVisible(), false);
    await block.locator('summary').click();
    assert.equal(await block.evaluate((d) => d.open), true);
    assert.match(await block.locator('.thinking-text').innerText(), /inverse fourth power/);
    // the answer is rendered separately, from the relay's html
    assert.equal(await page.locator('#messages .msg.assistant .markdown strong').innerText(), 'Rayleigh');
    assert.doesNotMatch(await page.locator('#messages .msg.assistant .markdown').innerText(), /inverse fourth power/);
  });
});

/**
 * A minimal OpenAI-compatible server: streams reasoning, then waits until the
 * test opens the gate, then streams the answer. Records each request body.
 */
async function fakeModel() {
  const requests = [];
  let release;
  const gate = new Promise((r) => { release = r; });
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => { raw += d; });
    req.on('end', async () => {
      if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end('{"error":{"message":"not found"}}');
        return;
      }
      requests.push(JSON.parse(raw));
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      const chunk = (delta, finish = null) => res.write(`data: ${JSON.stringify({
        id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 0, model: 'fake',
        choices: [{ index: 0, delta, finish_reason: finish }],
      })}\n\n`);
      chunk({ role: 'assistant' });
      for (const t of ['step one, ', 'step two, ', 'step three.']) chunk({ reasoning_content: t });
      await gate;
      for (const t of ['The ', 'answer ', 'is ', '**42**.']) chunk({ content: t });
      chunk({}, 'stop');
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/v1`, requests, release, close: () => new Promise((r) => server.close(r)) };
}

describe('thinking, streamed from a model', () => {
  let model;
  let relay;
  let browser;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    model = await fakeModel();
    relay = await Relay.start({ env: { LOOPCHAT_AGENT: 'openai', LOOPCHAT_OPENAI_BASE_URL: model.url, LOOPCHAT_OPENAI_MODEL: 'fake' } });
    browser = await launchBrowser();
  });

  after(async () => {
    model?.release();
    await browser?.close();
    await relay?.cleanup();
    await model?.close();
  });

  it('shows thinking live while the model reasons, keeps it collapsible in the stored reply, and the level reaches the model', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'reason' });
    await page.selectOption('#thinking', 'medium');
    await sendMessage(page, 'what is the answer?');
    const live = page.locator('#live .msg details.thinking-block');
    await live.waitFor();
    await page.waitForFunction(() => document.querySelector('#live .thinking-text')?.textContent === 'step one, step two, step three.');
    assert.equal(await live.evaluate((d) => d.open), true, 'open while the model is thinking');
    assert.equal(await page.locator('#messages .msg.assistant').count(), 0);
    assert.equal(model.requests.length, 1);
    assert.equal(model.requests[0].reasoning_effort, 'medium', 'the selected level is sent to the model');
    model.release();
    await page.waitForSelector('#messages .msg.assistant .markdown strong');
    assert.equal(await page.innerText('#messages .msg.assistant .markdown'), 'The answer is 42.');
    const stored = page.locator('#messages .msg.assistant details.thinking-block');
    assert.equal(await stored.count(), 1, 'one thinking block, not the live one plus the stored one');
    assert.equal(await stored.evaluate((d) => d.open), false, 'collapsed once the reply is stored');
    assert.equal(await stored.locator('.thinking-text').textContent(), 'step one, step two, step three.');
    assert.equal(await page.locator('#live .msg').count(), 0);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
