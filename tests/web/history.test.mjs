// History: a 5,000-message (≈11 MB) session opens at its latest page, keeps
// at most 300 message nodes in the DOM, loads older pages on scroll without
// jumping, and re-creates dropped messages when scrolling back.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, launchBrowser, newPage, openChat, missingPrerequisite, tempHome, writeStore } from './harness.mjs';
import { BIG, bigMessage } from './history-data.mjs';

const MAX_NODES = 300;
const TOOL_OUTPUT = Array.from({ length: 20000 }, (_, i) => `line ${i} of a very long tool output`).join('\n') + '\nTHE END';
const nodeCount = (page) => page.$$eval('.msg', (e) => e.length);

describe('history', () => {
  let relay;
  let browser;
  let page;
  const historyRequests = [];
  const infoRequests = [];

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    const home = await tempHome();
    await writeStore(home, {
      big: { count: BIG, make: bigMessage },
      tools: [
        { role: 'user', content: 'run the tool' },
        { role: 'toolResult', content: [{ type: 'text', text: TOOL_OUTPUT }] },
        { role: 'assistant', content: 'done' },
      ],
    });
    relay = await Relay.start({ home });
    browser = await launchBrowser();
    page = await newPage(browser, { viewport: { width: 1100, height: 800 } });
    page.on('request', (r) => {
      if (r.url().includes('/webchat/history?')) historyRequests.push(r.url());
      if (r.url().includes('/webchat/info?')) infoRequests.push(r.url());
    });
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('opens a 5,000-message session at its latest messages with few DOM nodes', async () => {
    // How fast is bench-open.mjs's figure (docs/benchmarks.md), not a bound here.
    await openChat(page, relay, { session: 'big' });
    await page.waitForSelector(`#messages .msg >> text=message ${BIG - 1} `);
    const n = await nodeCount(page);
    assert.ok(n > 0 && n <= MAX_NODES, `${n} message nodes`);
    const atBottom = await page.$eval('#scroller', (s) => s.scrollHeight - s.scrollTop - s.clientHeight < 5);
    assert.ok(atBottom, 'scrolled to the latest message');
    // the newest message is visible on screen
    const box = await page.locator(`#messages .msg >> text=message ${BIG - 1} `).boundingBox();
    assert.ok(box && box.y < 800 && box.y + box.height > 0);
    assert.equal(historyRequests.length, 0, 'no history request before scrolling');
    // The app took over the /info that boot.js asked for while the modules
    // loaded: one request, so boot.js's page size is the app's (state.js PAGE).
    assert.equal(infoRequests.length, 1, infoRequests.join('\n'));
  });

  it('scrolling up loads older pages, keeps the view still and stays under 300 nodes', async () => {
    const target = BIG - 1 - 400; // needs several older pages
    for (let round = 0; round < 40; round++) {
      const before = await page.evaluate(() => {
        const first = document.querySelector('#messages .msg');
        return { id: first.dataset.id, text: first.innerText.match(/message (\d+)/)[1] };
      });
      if (Number(before.text) <= target) break;
      await page.$eval('#scroller', (s) => { s.scrollTop = 0; });
      // the first message changes once more messages are prepended
      await page.waitForFunction((id) => document.querySelector('#messages .msg')?.dataset.id !== id, before.id, { timeout: 10000 });
      // the message that was at the top has not moved off screen: the view did not jump to the new top
      const pos = await page.evaluate((id) => {
        const s = document.getElementById('scroller');
        const el = document.querySelector(`#messages .msg[data-id="${id}"]`);
        return { top: el ? el.getBoundingClientRect().top - s.getBoundingClientRect().top : null, scrollTop: s.scrollTop };
      }, before.id);
      assert.ok(pos.top !== null && Math.abs(pos.top) < 50, `previous top message stayed in place (offset ${pos.top})`);
      assert.ok(pos.scrollTop > 0, 'scroll position preserved after prepending');
      const n = await nodeCount(page);
      assert.ok(n <= MAX_NODES, `${n} message nodes after round ${round}`);
    }
    const first = await page.$eval('#messages .msg', (e) => Number(e.innerText.match(/message (\d+)/)[1]));
    assert.ok(first <= target, `reached message ${first}`);
    assert.ok(historyRequests.length >= 7, `${historyRequests.length} history pages fetched`);
    for (const u of historyRequests) {
      const q = new URL(u).searchParams;
      assert.equal(q.get('session'), 'big');
      assert.ok(q.get('before'), 'paged by before=<oldest id>');
      assert.equal(q.get('limit'), '50');
    }
    // messages in the DOM are contiguous and in order
    const nums = await page.$$eval('#messages .msg', (els) => els.map((e) => Number(e.innerText.match(/message (\d+)/)[1])));
    for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1] + 1, `order at ${i}`);
  });

  it('scrolling back down re-creates dropped messages; "Latest" jumps to the end', async () => {
    assert.equal(await page.locator(`#messages .msg >> text=message ${BIG - 1} `).count(), 0, 'the newest message node was dropped while far away');
    const fetched = historyRequests.length;
    // scroll down step by step: the window moves down without refetching
    const lastNum = () => page.$eval('#messages .msg:last-child', (e) => Number(e.innerText.match(/message (\d+)/)[1]));
    const start = await lastNum();
    for (let i = 0; i < 2; i++) {
      const before = await lastNum();
      await page.$eval('#scroller', (s) => { s.scrollTop = s.scrollHeight; });
      await page.waitForFunction((n) => Number(document.querySelector('#messages .msg:last-child').innerText.match(/message (\d+)/)[1]) > n, before);
    }
    const last = await lastNum();
    assert.ok(last > start && last < BIG - 1, `window moved down (last ${start} → ${last})`);
    assert.ok((await nodeCount(page)) <= MAX_NODES);
    await page.waitForSelector('#jump-latest:not([hidden])');
    await page.click('#jump-latest');
    await page.waitForSelector(`#messages .msg >> text=message ${BIG - 1} `);
    assert.ok((await nodeCount(page)) <= MAX_NODES);
    assert.equal(historyRequests.length, fetched, 'loaded pages are reused, not refetched');
  });

  it('new messages still arrive at the bottom of a big session', async () => {
    await relay.send('fresh one', 'big');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: fresh one');
    assert.ok((await nodeCount(page)) <= MAX_NODES);
  });

  it('oversized tool output is collapsed behind its size, and shown in full when opened', async () => {
    await openChat(page, relay, { session: 'tools' });
    const block = page.locator('#messages .msg.toolResult details.tool-block');
    await block.waitFor();
    assert.equal(await block.evaluate((d) => d.open), false, 'collapsed');
    assert.match(await block.locator('summary').innerText(), /Tool output \([\d.]+ (KiB|MiB)\)/);
    await block.locator('summary').click();
    const text = await block.locator('pre').textContent();
    assert.equal(text.length, TOOL_OUTPUT.length, 'nothing cut');
    assert.ok(text.endsWith('THE END'));
    await page.waitForSelector('#messages .msg.assistant >> text=done');
  });
});
