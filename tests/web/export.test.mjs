// Export and import from the ⋯ menu: a chat exported as HTML opens from
// file:// with the network off and shows its messages (highlighted code, the
// inlined image); a ChatGPT export imported from the file picker becomes
// sessions on their current branch; a broken file is refused with where it
// is wrong, and nothing is added.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO, suiteFixture, newPage, openChat, pngBuffer, screenshot, tempHome, waitFor } from './harness.mjs';

const FIXTURE = path.join(REPO, 'tests', 'fixtures', 'chatgpt', 'conversations.json');
const CODE = 'code:\n```rust\nfn main() { println!("offline"); }\n```';

describe('export and import', () => {
  const fx = suiteFixture();

  async function sessionWithImageAndCode(key) {
    const { relay } = fx;
    const res = await fetch(`${relay.origin}/webchat/attachments`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${relay.token}`, 'Content-Type': 'image/png' },
      body: pngBuffer(16, 16, [220, 38, 38]),
    });
    assert.equal(res.status, 200);
    const { id } = await res.json();
    await relay.send('a red square', key, { attachments: [{ id }] });
    await relay.send(CODE, key);
  }

  it('exports a chat as HTML that opens from file:// with the network off', async () => {
    const { relay, browser } = fx;
    await sessionWithImageAndCode('exp');
    const page = await newPage(browser, { acceptDownloads: true });
    await openChat(page, relay, { session: 'exp' });
    await page.click('#chat-menu > summary');
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 30000 }),
      page.click('[data-export="html"]'),
    ]);
    assert.equal(download.suggestedFilename(), 'exp.html');
    const dir = await tempHome('loopchat-export-');
    const file = path.join(dir, 'exp.html');
    await download.saveAs(file);
    await page.context().close();

    for (const colorScheme of ['light', 'dark']) {
      const offline = await newPage(browser, { offline: true, colorScheme });
      const requests = [];
      offline.on('request', (r) => requests.push(r.url()));
      await offline.context().route('**', (route) => {
        const u = route.request().url();
        if (u.startsWith('file:')) return route.continue();
        return route.abort();
      });
      const url = pathToFileURL(file).href;
      await offline.goto(url);
      await offline.waitForSelector('article.assistant span[class^="hl-"]', { timeout: 15000 });
      const seen = await offline.evaluate(() => ({
        texts: [...document.querySelectorAll('article .body')].map((e) => e.innerText.trim()),
        image: (() => {
          const img = document.querySelector('article.user img');
          return img && { src: img.src.slice(0, 21), width: img.naturalWidth, complete: img.complete };
        })(),
        scripts: document.scripts.length,
        background: getComputedStyle(document.body).backgroundColor,
      }));
      assert.equal(seen.scripts, 0);
      assert.equal(seen.texts[0], 'a red square');
      assert.match(seen.texts[1], /echo: a red square/);
      assert.match(seen.texts[3], /fn main\(\) \{ println!\("offline"\); \}/);
      assert.deepEqual(seen.image, { src: 'data:image/png;base64', width: 16, complete: true });
      assert.equal(seen.background, colorScheme === 'dark' ? 'rgb(13, 17, 23)' : 'rgb(255, 255, 255)');
      assert.deepEqual(requests, [url], 'the page asked for nothing but itself');
      assert.deepEqual(offline.problems, []);
      await screenshot(offline, `export-offline-${colorScheme}`);
      await offline.context().close();
    }
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('imports a ChatGPT export from the file picker, and refuses a broken file whole', async () => {
    const { relay, browser } = fx;
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'main' });
    await page.click('#chat-menu > summary');
    const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.click('#import-chats')]);
    await chooser.setFiles(FIXTURE);
    // The first conversation of the file opens.
    await page.waitForSelector('#messages .msg >> text=Γειά σου! 👋', { timeout: 30000 });
    assert.equal(await page.innerText('#session-title'), 'Greetings');
    const rust = page.locator('#session-list .session-item', { hasText: 'Rust lifetimes 🦀 — ünïcödé' });
    await rust.click();
    await page.waitForSelector('#messages .msg >> text=ça marche', { timeout: 15000 });
    const texts = await page.$$eval('#messages .msg .msg-body', (els) => els.map((e) => e.innerText.trim()));
    assert.equal(texts.length, 4, texts.join(' | '));
    assert.match(texts[0], /日本語 🦀/);
    assert.match(texts[1], /^A lifetime names/);
    assert.ok(!texts.some((t) => t.includes('OLD ANSWER')), 'the regenerated answer is off the branch');
    assert.ok(await page.locator('#messages .msg.assistant span[class^="hl-"]').count() > 0, 'the imported code is highlighted');

    const count = async () => (await relay.api('GET', 'sessions')).json.sessions.length;
    const before = await count();
    let message = null;
    page.once('dialog', (d) => { message = d.message(); d.dismiss().catch(() => {}); });
    await page.click('#chat-menu > summary');
    const [again] = await Promise.all([page.waitForEvent('filechooser'), page.click('#import-chats')]);
    await again.setFiles({ name: 'broken.jsonl', mimeType: 'application/octet-stream', buffer: Buffer.from('{"type":"session","version":3,"id":"x"}\n{oops\n') });
    await waitFor(() => message, { what: 'the refusal' });
    assert.match(message, /broken\.jsonl/);
    assert.match(message, /line 2: not valid JSON/);
    assert.equal(await count(), before, 'a refused file added no session');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
