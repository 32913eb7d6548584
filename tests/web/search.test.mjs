// Search across every session (issue 17, item 2): Ctrl+K opens the dialog,
// the keyboard picks a hit, and the hit opens its session — here a
// 5,000-message one — at that message, far from the latest page, with newer
// pages loaded on scrolling down. Hostile text shows in a snippet as text.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, launchBrowser, newPage, openChat, missingPrerequisite, tempHome, writeStore, waitFor } from './harness.mjs';
import { BIG, bigMessage } from './history-data.mjs';

const TARGET = 1234;
const HOSTILE = 'pwnword <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> & done';

function bigWithTarget(i) {
  const m = bigMessage(i);
  if (i !== TARGET) return m;
  return { ...m, content: `message ${i} the xylophone is in the attic` };
}

describe('search', () => {
  let relay;
  let browser;
  let page;
  const historyRequests = [];

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    const home = await tempHome();
    await writeStore(home, {
      big: { count: BIG, make: bigWithTarget },
      other: [
        { role: 'user', content: 'a xylophone elsewhere too' },
        { role: 'assistant', content: 'noted' },
      ],
      hostile: [{ role: 'user', content: HOSTILE }],
      main: [{ role: 'user', content: 'hello' }],
    });
    relay = await Relay.start({ home });
    // The index is built from the transcripts at start: wait until it has them.
    await waitFor(async () => {
      const r = await relay.api('GET', 'search?q=xylophone');
      return r.status === 200 && r.json.complete && r.json.hits.length === 2;
    }, { timeout: 120000, what: 'the index to hold the stored sessions' });
    browser = await launchBrowser();
    page = await newPage(browser, { viewport: { width: 1100, height: 800 } });
    page.on('request', (r) => { if (r.url().includes('/webchat/history?')) historyRequests.push(r.url()); });
    await openChat(page, relay, { session: 'main' });
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('Ctrl+K opens the dialog with the focus in its field; Escape closes it and gives the focus back', async () => {
    await page.focus('#input');
    await page.keyboard.press('Control+k');
    await page.waitForSelector('#search-dialog[open]');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'search-input');
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !document.getElementById('search-dialog').open);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'input');
    // The button opens it too.
    await page.click('#search-open');
    await page.waitForSelector('#search-dialog[open]');
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !document.getElementById('search-dialog').open);
  });

  it('shows hits with session, time and the match highlighted; the keyboard moves through them', async () => {
    await page.keyboard.press('Control+k');
    await page.waitForSelector('#search-dialog[open]');
    await page.keyboard.type('XYLOPHONE');
    await page.waitForFunction(() => document.querySelectorAll('#search-results [role=option]').length === 2);
    const hits = await page.$$eval('#search-results [role=option]', (els) => els.map((e) => ({
      session: e.querySelector('.search-hit-session').textContent,
      time: e.querySelector('time').getAttribute('datetime'),
      marks: [...e.querySelectorAll('.search-hit-snippet mark')].map((m) => m.textContent),
      selected: e.getAttribute('aria-selected'),
    })));
    assert.deepEqual(hits.map((h) => h.session).sort(), ['big', 'other']);
    for (const h of hits) {
      assert.deepEqual(h.marks.map((m) => m.toLowerCase()), ['xylophone']);
      assert.ok(h.time && !Number.isNaN(Date.parse(h.time)), h.time);
    }
    assert.deepEqual(hits.map((h) => h.selected), ['true', 'false']);
    const active = () => page.evaluate(() => document.getElementById('search-input').getAttribute('aria-activedescendant'));
    assert.equal(await active(), 'search-hit-0');
    await page.keyboard.press('ArrowDown');
    assert.equal(await active(), 'search-hit-1');
    await page.keyboard.press('ArrowDown');
    assert.equal(await active(), 'search-hit-0', 'wraps around');
    await page.keyboard.press('ArrowUp');
    assert.equal(await active(), 'search-hit-1');
    // Pick the hit in the big session with the keyboard.
    const bigIndex = hits.findIndex((h) => h.session === 'big');
    if (bigIndex !== 1) await page.keyboard.press('ArrowUp');
    historyRequests.length = 0;
    // What the highlighted message looks like when it shows (the highlight
    // is brief, so it is caught as it happens rather than looked for later).
    await page.evaluate(() => {
      window.__hit = null;
      const seen = new MutationObserver(() => {
        const node = document.querySelector('#messages .msg.search-target');
        if (!node || window.__hit) return;
        window.__hit = { text: node.textContent, focused: document.activeElement === node };
        seen.disconnect();
      });
      seen.observe(document.getElementById('messages'), { subtree: true, childList: true, attributes: true });
    });
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => !document.getElementById('search-dialog').open);
  });

  it('opens the 5,000-message session at that message, highlighted and focused', async () => {
    const target = page.locator(`#messages .msg >> text=the xylophone is in the attic`);
    await target.waitFor({ timeout: 15000 });
    assert.ok(historyRequests.some((u) => u.includes('around=')), historyRequests.join('\n'));
    assert.equal(new URL(page.url()).searchParams.get('session'), 'big');
    await page.waitForFunction(() => window.__hit);
    const state = await page.evaluate(() => {
      const node = [...document.querySelectorAll('#messages .msg')].find((n) => n.textContent.includes('xylophone is in the attic'));
      const sc = document.getElementById('scroller').getBoundingClientRect();
      const r = node && node.getBoundingClientRect();
      return {
        ...window.__hit,
        visible: Boolean(r && r.bottom > sc.top && r.top < sc.bottom),
        nodes: document.querySelectorAll('#messages .msg').length,
        latestShown: document.querySelector('#messages').textContent.includes(`message ${5000 - 1} `),
      };
    });
    assert.match(state.text, /xylophone/);
    assert.ok(state.focused, 'the message has the focus');
    assert.ok(state.visible, 'the message is on screen');
    assert.ok(state.nodes > 1 && state.nodes <= 300, `${state.nodes} nodes`);
    assert.ok(!state.latestShown, 'the latest page is not what is shown');
    // The highlight is brief.
    await page.waitForSelector('#messages .msg.search-target', { state: 'detached', timeout: 10000 });
  });

  it('pages back and forward from there', async () => {
    // Forward: newer pages (history?after=) as the user scrolls down.
    const later = `message ${TARGET + 60} `;
    await waitFor(async () => {
      await page.$eval('#scroller', (s) => { s.scrollTop = s.scrollHeight; });
      return page.evaluate((t) => document.getElementById('messages').textContent.includes(t), later);
    }, { timeout: 30000, what: 'a newer page' });
    assert.ok(historyRequests.some((u) => u.includes('after=')), historyRequests.join('\n'));
    // Back: older pages (history?before=) as the user scrolls up.
    const earlier = `message ${TARGET - 60} `;
    await waitFor(async () => {
      await page.$eval('#scroller', (s) => { s.scrollTop = 0; });
      return page.evaluate((t) => document.getElementById('messages').textContent.includes(t), earlier);
    }, { timeout: 30000, what: 'an older page' });
    assert.ok(historyRequests.some((u) => u.includes('before=')), historyRequests.join('\n'));
    // "Latest" goes back to the end of the conversation.
    await page.click('#jump-latest');
    await page.locator(`#messages .msg >> text=message ${BIG - 1} `).waitFor({ timeout: 15000 });
  });

  it('an open dialog shows a turn stored elsewhere once it is indexed, keeping the chosen hit', async () => {
    await page.keyboard.press('Control+k');
    await page.waitForSelector('#search-dialog[open]');
    await page.fill('#search-input', 'xylophone');
    await page.waitForFunction(() => document.querySelectorAll('#search-results [role=option]').length === 2);
    await page.keyboard.press('ArrowDown');
    const chosen = await page.$eval('#search-results [aria-selected=true]', (e) => e.dataset.messageId);
    // Another window (here: a script) stores a turn in another session.
    await relay.send('a third xylophone, from a script', 'late');
    // No typing: the dialog asks again when the session list changes.
    await page.waitForFunction(() => [...document.querySelectorAll('#search-results .search-hit')]
      .some((e) => e.dataset.session === 'late'), null, { timeout: 15000 });
    assert.equal(await page.$eval('#search-results [aria-selected=true]', (e) => e.dataset.messageId), chosen);
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !document.getElementById('search-dialog').open);
  });

  it('shows hostile text in a snippet as text only', async () => {
    await page.keyboard.press('Control+k');
    await page.waitForSelector('#search-dialog[open]');
    await page.fill('#search-input', 'pwnword');
    await page.waitForFunction(() => document.querySelectorAll('#search-results [role=option]').length === 1);
    const r = await page.$eval('#search-results', (list) => ({
      text: list.querySelector('.search-hit-snippet').textContent,
      elements: [...list.querySelectorAll('.search-hit-snippet *')].map((e) => e.tagName),
      pwned: window.__pwned,
    }));
    assert.ok(r.text.includes('<img src=x onerror="window.__pwned=1">'), r.text);
    assert.ok(r.text.includes('<script>'), r.text);
    assert.deepEqual(r.elements, ['MARK']);
    assert.equal(r.pwned, undefined);
    // Escape closes the dialog even with text in its field.
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !document.getElementById('search-dialog').open);
    assert.deepEqual(page.problems, []);
  });
});
