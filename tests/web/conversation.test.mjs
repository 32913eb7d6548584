// Conversation: sending, replies, markdown, hostile HTML, streaming, Stop.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  Relay, launchBrowser, newPage, openChat, sendMessage, transcriptTexts, missingPrerequisite, readEvents,
} from './harness.mjs';

const words = (n, tag) => Array.from({ length: n }, (_, i) => `${tag}${i}`).join(' ');

describe('conversation', () => {
  let relay;
  let browser;
  let page;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start({ env: { LOOPCHAT_ECHO_DELAY_MS: '40' } });
    browser = await launchBrowser();
    page = await newPage(browser);
    await openChat(page, relay);
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  const idle = () => page.waitForFunction(() => document.getElementById('stop').hidden && !document.querySelector('#live .msg') && !document.querySelector('#pending .msg'), null, { timeout: 20000 });

  it('Enter sends; the reply arrives once, with roles and timestamps', async () => {
    await sendMessage(page, 'hello there');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: hello there');
    await idle();
    assert.deepEqual(await transcriptTexts(page, 'user'), ['hello there']);
    assert.deepEqual(await transcriptTexts(page, 'assistant'), ['echo: hello there']);
    const times = await page.$$eval('#messages .msg time[datetime]', (ts) => ts.map((t) => t.getAttribute('datetime')));
    assert.equal(times.length, 2);
    for (const t of times) assert.ok(Math.abs(Date.parse(t) - Date.now()) < 120000, `timestamp ${t} is now-ish`);
    assert.equal(await page.inputValue('#input'), '', 'input cleared after sending');
    assert.deepEqual(page.problems, []);
  });

  it('Shift+Enter adds a line, the input grows, Enter sends all lines', async () => {
    const h0 = await page.$eval('#input', (e) => e.getBoundingClientRect().height);
    await page.click('#input');
    await page.keyboard.type('line one');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('line two');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('line three');
    assert.equal(await page.inputValue('#input'), 'line one\nline two\nline three');
    const h1 = await page.$eval('#input', (e) => e.getBoundingClientRect().height);
    assert.ok(h1 > h0 + 20, `input grew (${h0} → ${h1})`);
    assert.equal((await transcriptTexts(page, 'user')).length, 1, 'Shift+Enter did not send');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#messages .msg.assistant >> text=line three');
    await idle();
    const users = await transcriptTexts(page, 'user');
    assert.equal(users.at(-1), 'line one\nline two\nline three');
    const h2 = await page.$eval('#input', (e) => e.getBoundingClientRect().height);
    assert.ok(h2 < h1, 'input shrinks back after sending');
  });

  it('renders the relay markdown: code blocks with a copy button, tables, safe links', async () => {
    const text = 'Here is **bold** and `inline`\n\n```js\nlet answer = 42;\n```\n\n| col a | col b |\n|---|---|\n| one | two |\n\n[a link](https://example.com/x)';
    await sendMessage(page, text);
    await page.waitForSelector('#messages .msg.assistant table');
    await idle();
    const last = page.locator('#messages .msg.assistant').last();
    assert.equal(await last.locator('.markdown strong').innerText(), 'bold');
    assert.equal(await last.locator('.markdown td').first().innerText(), 'one');
    assert.match(await last.locator('pre code').innerText(), /let answer = 42;/);
    const copy = last.locator('.code-wrap .copy-btn');
    assert.equal(await copy.count(), 1);
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: relay.origin });
    await copy.click();
    await page.waitForFunction(() => document.querySelector('#messages .msg.assistant:last-of-type .copy-btn')?.textContent === 'Copied');
    assert.match(await page.evaluate(() => navigator.clipboard.readText()), /let answer = 42;/);
    const link = last.locator('.markdown a');
    assert.equal(await link.getAttribute('href'), 'https://example.com/x');
    assert.equal(await link.getAttribute('target'), '_blank');
    const rel = (await link.getAttribute('rel')).split(/\s+/);
    // exactly the relay's sanitizer's value, not rewritten by the page
    assert.deepEqual(rel.sort(), ['nofollow', 'noopener', 'noreferrer'], `rel=${rel}`);
    // the user's own text is never rendered as markdown
    const userLast = (await transcriptTexts(page, 'user')).at(-1);
    assert.ok(userLast.includes('**bold**'), 'user text shown verbatim');
  });

  it('shows hostile HTML as text and never executes it', async () => {
    await page.evaluate(() => { window.__pwned = 0; });
    const hostile = 'x <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> <a href="javascript:window.__pwned=3">click</a> <b onmouseover="window.__pwned=4">b</b>';
    await sendMessage(page, hostile);
    await page.waitForSelector('#messages .msg.assistant >> text=echo: x');
    await idle();
    const lastUser = (await transcriptTexts(page, 'user')).at(-1);
    assert.equal(lastUser, hostile, 'user text shown exactly as typed');
    await page.hover('#messages .msg.assistant:last-of-type .msg-body');
    const links = page.locator('#messages .msg.assistant').last().locator('a');
    for (let i = 0; i < await links.count(); i++) {
      const href = await links.nth(i).getAttribute('href');
      assert.ok(!href || !/^javascript:/i.test(href), `no javascript: link (${href})`);
    }
    const dangerous = await page.$$eval('#messages *', (els) => els.filter((e) => e.tagName === 'SCRIPT'
      || [...e.attributes].some((a) => /^on/i.test(a.name))).map((e) => e.outerHTML));
    assert.deepEqual(dangerous, []);
    // the session preview in the sidebar is text too
    await page.waitForFunction(() => (document.querySelector('#session-list .session-item[data-key="main"] .session-preview')?.textContent || '').includes('<img src=x'));
    assert.equal(await page.locator('#session-list img, #session-list script').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned), 0);
    assert.deepEqual(page.problems, []);
  });

  it('streams a reply token by token into a live bubble', async () => {
    await page.evaluate(() => {
      window.__lens = [];
      const live = document.getElementById('live');
      new MutationObserver(() => {
        const t = live.querySelector('.stream-text');
        if (t) window.__lens.push(t.textContent.length);
      }).observe(live, { subtree: true, childList: true, characterData: true });
    });
    const text = words(25, 'w');
    await sendMessage(page, text);
    await page.waitForSelector('#stop:not([hidden])');
    await page.waitForSelector(`#messages .msg.assistant >> text=echo: ${text}`, { timeout: 20000 });
    await idle();
    const lens = await page.evaluate(() => window.__lens.filter((n, i, a) => i === 0 || n !== a[i - 1]));
    assert.ok(lens.length >= 8, `saw the reply grow in steps (${lens.join(',')})`);
    for (let i = 1; i < lens.length; i++) assert.ok(lens[i] > lens[i - 1], 'the live text only grows');
    assert.equal((await transcriptTexts(page, 'assistant')).filter((t) => t === `echo: ${text}`).length, 1);
  });

  it('Stop aborts the run on the relay and keeps the partial reply', async () => {
    const text = words(200, 's');
    const since = (await relay.api('GET', 'info?session=main&limit=1')).json.lastSeq;
    await sendMessage(page, text);
    await page.waitForFunction(() => (document.querySelector('#live .stream-text')?.textContent.length || 0) > 30);
    await page.click('#stop');
    await idle();
    const events = await readEvents(relay, 'main', since, { until: (ev) => ev.type === 'run.end' });
    const end = events.find((e) => e.type === 'run.end');
    assert.equal(end?.state, 'aborted', 'the relay ended the run as aborted');
    const last = (await transcriptTexts(page, 'assistant')).at(-1);
    assert.ok(last.startsWith('echo: s0 s1'), last.slice(0, 40));
    assert.ok(!last.includes('s199'), 'the reply was cut short');
  });

  it('Esc stops a run too, and the next turn works', async () => {
    const text = words(200, 'e');
    await sendMessage(page, text);
    await page.waitForFunction(() => (document.querySelector('#live .stream-text')?.textContent.length || 0) > 20);
    await page.keyboard.press('Escape');
    await idle();
    assert.ok(!(await transcriptTexts(page, 'assistant')).at(-1).includes('e199'));
    await sendMessage(page, 'after stop');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: after stop');
  });

  it('announces replies in a live region', async () => {
    assert.equal(await page.getAttribute('#announcer', 'aria-live'), 'polite');
    await sendMessage(page, 'announce me');
    await page.waitForFunction(() => document.getElementById('announcer').textContent.includes('echo: announce me'));
  });
});
