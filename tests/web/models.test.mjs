// Issue 17 item 5 in the page: the model picker (the relay's list, the
// session's model, the choice sent with the turn and kept by the relay for
// that session only) and each reply's figures under it, also after a reload.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Relay, tempHome, launchBrowser, newPage, openChat, sendMessage, missingPrerequisite } from './harness.mjs';

/** A loopback port nothing listens on (taken, then released). */
async function deadPort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

describe('model picker and reply figures', () => {
  let browser;
  const relays = [];

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    for (const r of relays) await r.cleanup();
  });

  it('lists the backend\'s models, sends the choice with the turn, and keeps it for that session', async () => {
    // The configured list (the server's own list is tested against llama.cpp
    // in tests/tests/models.rs); the server is down, so the turn fails, after
    // the relay has stored the session's choice.
    const home = await tempHome();
    const port = await deadPort();
    await fsp.writeFile(path.join(home, 'config.toml'), [
      '[agent]', 'backend = "openai"',
      '[agent.openai]', `base_url = "http://127.0.0.1:${port}/v1"`, 'model = "alpha"', 'models = ["alpha", "beta"]', 'connect_timeout_secs = 2', '',
    ].join('\n'), { mode: 0o600 });
    const relay = await Relay.start({ home });
    relays.push(relay);
    const page = await newPage(browser);
    const rpcBodies = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/webchat/rpc') && r.method() === 'POST') rpcBodies.push(JSON.parse(r.postData()));
    });
    await openChat(page, relay, { session: 'pick' });
    await page.waitForSelector('#model-picker:not([hidden])');
    assert.deepEqual(await page.$$eval('#model option', (os) => os.map((o) => o.value)), ['alpha', 'beta']);
    assert.equal(await page.inputValue('#model'), 'alpha');
    await page.selectOption('#model', 'beta');
    await sendMessage(page, 'hello');
    await page.waitForSelector('.msg .error-note', { timeout: 30000 });
    assert.equal(rpcBodies.at(-1).model, 'beta');

    // The choice is the session's, from the relay: after a reload and in a
    // fresh browser profile alike; another session keeps the default.
    assert.equal((await relay.api('GET', 'info?session=pick')).json.model, 'beta');
    const fresh = await newPage(browser);
    await openChat(fresh, relay, { session: 'pick' });
    await fresh.waitForSelector('#model-picker:not([hidden])');
    assert.equal(await fresh.inputValue('#model'), 'beta');
    await openChat(fresh, relay, { session: 'other' });
    await fresh.waitForFunction(() => document.getElementById('model').value === 'alpha');
    assert.equal((await relay.api('GET', 'info?session=other')).json.model, 'alpha');

    // A name the backend does not offer is refused with the reason.
    const bad = await relay.api('POST', 'rpc', { text: 'x', session: 'pick', model: 'gamma' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /unknown model "gamma".*alpha, beta/);
    await fresh.context().close();
    await page.context().close();
  });

  it('a model server that is down: the picker says the list is unavailable, and why', async () => {
    const home = await tempHome();
    const port = await deadPort();
    await fsp.writeFile(path.join(home, 'config.toml'), [
      '[agent]', 'backend = "openai"', '[agent.openai]', `base_url = "http://127.0.0.1:${port}/v1"`, '',
    ].join('\n'), { mode: 0o600 });
    const relay = await Relay.start({ home });
    relays.push(relay);
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'down' });
    await page.waitForSelector('#model-picker:not([hidden])');
    assert.equal(await page.isDisabled('#model'), true);
    assert.equal(await page.innerText('#model'), 'unavailable');
    assert.match(await page.getAttribute('#model-picker', 'title'), new RegExp(`could not be read: .*127\\.0\\.0\\.1:${port}/v1/models`));
    await page.context().close();
  });

  it('a backend without models shows no picker; each reply shows its figures, also after a reload', async () => {
    const relay = await Relay.start({ env: { LOOPCHAT_ECHO_DELAY_MS: '20' } });
    relays.push(relay);
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'stats' });
    assert.equal(await page.isHidden('#model-picker'), true);
    await sendMessage(page, 'one two three four');
    const stats = '#messages .msg.assistant .msg-stats';
    await page.waitForSelector(stats, { timeout: 20000 });
    // echo reports no token counts: the relay's own, said so
    assert.equal(await page.getAttribute(stats, 'data-source'), 'relay');
    const text = await page.innerText(stats);
    assert.match(text, /^5 chunks · [\d.]+ chunks\/s · first token [\d.]+ s$/);
    assert.match(await page.getAttribute(stats, 'title'), /reported no token counts/);
    await page.reload();
    await page.waitForSelector(stats);
    assert.equal(await page.innerText(stats), text, 'the same figures, from the store');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
