// Live and resilient: reloads, a reload in the middle of a reply, a lost
// link (cut proxy) with resume, and the offline outbox across a relay restart.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  Relay, Proxy, launchBrowser, newPage, openChat, sendMessage, transcriptTexts, missingPrerequisite, waitForConnected,
} from './harness.mjs';

const words = (n, tag) => Array.from({ length: n }, (_, i) => `${tag}${i}`).join(' ');

/** Record every text the live bubble shows (survives reloads: an init script). */
async function recordLiveTexts(context) {
  await context.addInitScript(() => {
    window.__liveTexts = [];
    const start = () => {
      const live = document.getElementById('live');
      if (!live) return;
      new MutationObserver(() => {
        for (const t of live.querySelectorAll('.stream-text')) window.__liveTexts.push(t.textContent);
      }).observe(live, { subtree: true, childList: true, characterData: true });
    };
    document.addEventListener('DOMContentLoaded', start);
  });
}

const idle = (page, timeout = 30000) => page.waitForFunction(() => document.getElementById('stop').hidden && !document.querySelector('#live .msg') && !document.querySelector('#pending .msg'), null, { timeout });

describe('resilience', () => {
  let relay;
  let browser;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start({ env: { LOOPCHAT_ECHO_DELAY_MS: '50' } });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('a reload keeps the history', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'reload' });
    await sendMessage(page, 'first message');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: first message');
    await sendMessage(page, 'second message');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: second message');
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    assert.equal(new URL(page.url()).searchParams.get('session'), 'reload');
    assert.deepEqual(await transcriptTexts(page), ['first message', 'echo: first message', 'second message', 'echo: second message']);
    await page.context().close();
  });

  it('a reload in the middle of a reply shows the reply so far and continues it, without doubling', async () => {
    const page = await newPage(browser);
    await recordLiveTexts(page.context());
    await openChat(page, relay, { session: 'midstream' });
    const text = words(70, 'm');
    const expected = `echo: ${text}`;
    await sendMessage(page, text);
    await page.waitForFunction(() => (document.querySelector('#live .stream-text')?.textContent.length || 0) > 40);
    await page.reload();
    // the reply in progress is visible again before it is finished
    await page.waitForFunction(() => (document.querySelector('#live .stream-text')?.textContent.length || 0) > 40, null, { timeout: 10000 });
    assert.equal(await page.locator('#messages .msg.assistant').count(), 0, 'reply not finished yet when shown');
    await page.waitForSelector('#messages .msg.assistant', { timeout: 30000 });
    await idle(page);
    assert.deepEqual(await transcriptTexts(page, 'assistant'), [expected]);
    assert.deepEqual(await transcriptTexts(page, 'user'), [text]);
    const seen = await page.evaluate(() => window.__liveTexts);
    assert.ok(seen.length > 5, 'the live bubble was updated after the reload');
    for (const t of seen) assert.ok(expected.startsWith(t), `live text is a prefix of the reply (no doubled text): ${t.slice(0, 80)}…`);
    await page.context().close();
  });

  it('two tabs on one session: a message sent in one shows once in both, nothing left pending', async () => {
    const a = await newPage(browser);
    await openChat(a, relay, { session: 'twotabs' });
    const b = await a.context().newPage();
    b.problems = [];
    await b.goto(a.url());
    await b.waitForSelector('#app[data-state="ready"]');
    await waitForConnected(b);
    await sendMessage(a, 'from tab a');
    for (const p of [a, b]) {
      await p.waitForSelector('#messages .msg.assistant >> text=echo: from tab a');
      await idle(p);
      assert.deepEqual(await transcriptTexts(p), ['from tab a', 'echo: from tab a']);
    }
    await sendMessage(b, 'from tab b');
    for (const p of [a, b]) {
      await p.waitForSelector('#messages .msg.assistant >> text=echo: from tab b');
      await idle(p);
      assert.deepEqual(await transcriptTexts(p), ['from tab a', 'echo: from tab a', 'from tab b', 'echo: from tab b']);
    }
    const info = (await relay.api('GET', 'info?session=twotabs')).json;
    assert.equal(info.initialMessages.length, 4, 'stored once each');
    await a.context().close();
  });

  it('a lost connection shows a banner and resumes from its last seq: nothing lost, nothing doubled', async () => {
    const proxy = await Proxy.start(relay.port);
    const page = await newPage(browser);
    await recordLiveTexts(page.context());
    try {
      await openChat(page, relay, { session: 'flaky', port: proxy.port });
      await sendMessage(page, 'before the cut');
      await page.waitForSelector('#messages .msg.assistant >> text=echo: before the cut');
      const long = words(40, 'c');
      await sendMessage(page, long);
      await page.waitForFunction(() => (document.querySelector('#live .stream-text')?.textContent.length || 0) > 15);
      await proxy.cut();
      await page.waitForSelector('#banner:not([hidden])');
      assert.match(await page.innerText('#banner'), /lost|reconnect/i);
      // meanwhile another client (a script) talks in this session
      const other = await relay.send('while you were away', 'flaky');
      assert.equal(other.ok, true);
      await proxy.restore();
      await waitForConnected(page, 40000);
      await page.waitForSelector('#messages .msg.assistant >> text=echo: while you were away', { timeout: 20000 });
      await idle(page);
      assert.deepEqual(await transcriptTexts(page, 'user'), ['before the cut', long, 'while you were away']);
      assert.deepEqual(await transcriptTexts(page, 'assistant'), ['echo: before the cut', `echo: ${long}`, 'echo: while you were away']);
      for (const t of await page.evaluate(() => window.__liveTexts)) {
        const replies = ['echo: before the cut', `echo: ${long}`, 'echo: while you were away'];
        assert.ok(replies.some((r) => r.startsWith(t)), `live text has no doubled part: ${t.slice(0, 60)}`);
      }
      // ids in the DOM are unique
      const ids = await page.$$eval('#messages .msg', (els) => els.map((e) => e.dataset.id));
      assert.equal(new Set(ids).size, ids.length);
    } finally {
      await page.context().close();
      await proxy.close();
    }
  });

  it('messages typed while the relay is down are queued and delivered exactly once after it restarts', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'queue' });
    await sendMessage(page, 'online message');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: online message');
    await relay.stop();
    await page.waitForSelector('#banner:not([hidden])');
    await sendMessage(page, 'typed while offline');
    await page.waitForSelector('#pending .msg[data-state="queued"] >> text=typed while offline');
    assert.match(await page.innerText('#pending .msg .msg-status'), /queued/i);
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('loopchat.outbox.v1')));
    assert.equal(stored.length, 1);
    assert.match(stored[0].id, /^[0-9a-f-]{36}$/, 'queued item carries a client uuid');
    await relay.restart();
    await page.waitForSelector('#messages .msg.assistant >> text=echo: typed while offline', { timeout: 40000 });
    await idle(page);
    const users = await transcriptTexts(page, 'user');
    assert.equal(users.filter((t) => t === 'typed while offline').length, 1);
    assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('loopchat.outbox.v1') || '[]').length), 0, 'outbox drained');
    // the relay's own record agrees
    const info = (await relay.api('GET', 'info?session=queue&limit=50')).json;
    const texts = info.initialMessages.map((m) => (typeof m.content === 'string' ? m.content : m.content.map((p) => p.text || '').join('')));
    assert.deepEqual(texts, ['online message', 'echo: online message', 'typed while offline', 'echo: typed while offline']);
    await page.context().close();
  });

  it('an outbox left by a closed page is sent once; resending the same id does not create a second turn', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'leftover' });
    const item = { id: '6f1d3c1e-9a8b-4c7d-8e6f-5a4b3c2d1e0f', session: 'leftover', text: 'left in the outbox', thinking: 'off', attachments: [], createdAt: new Date().toISOString() };
    await page.evaluate((it) => localStorage.setItem('loopchat.outbox.v1', JSON.stringify([it])), item);
    await page.reload();
    await page.waitForSelector('#messages .msg.assistant >> text=echo: left in the outbox', { timeout: 20000 });
    await idle(page);
    // as if the answer had been lost: the same item (same id) is sent again
    await page.evaluate((it) => localStorage.setItem('loopchat.outbox.v1', JSON.stringify([it])), item);
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    await page.waitForFunction(() => JSON.parse(localStorage.getItem('loopchat.outbox.v1') || '[]').length === 0, null, { timeout: 20000 });
    await idle(page);
    const info = (await relay.api('GET', 'info?session=leftover&limit=50')).json;
    const users = info.initialMessages.filter((m) => m.role === 'user');
    assert.equal(users.length, 1, `one stored user message, got ${JSON.stringify(users.map((m) => m.content))}`);
    assert.deepEqual(await transcriptTexts(page, 'user'), ['left in the outbox']);
    await page.context().close();
  });
});
