// Attachments: images by the attach button (file input), paste and
// drag-and-drop; previews; limits (10 MiB, 8 per message, from /webchat/info); upload with
// POST /webchat/attachments then rpc `attachments:[{id}]`; shown in the transcript.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, launchBrowser, newPage, openChat, sendMessage, missingPrerequisite, pngBuffer, waitFor } from './harness.mjs';

describe('attachments', () => {
  let relay;
  let browser;
  let page;
  const uploads = [];
  const rpcBodies = [];
  const uploadAnswers = [];

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start();
    browser = await launchBrowser();
    page = await newPage(browser);
    page.on('response', async (r) => {
      if (r.url().endsWith('/webchat/attachments') && r.request().method() === 'POST') {
        try { uploadAnswers.push(await r.json()); } catch { uploadAnswers.push(null); }
      }
    });
    page.on('request', (r) => {
      if (r.url().endsWith('/webchat/attachments') && r.method() === 'POST') uploads.push({ type: r.headers()['content-type'] });
      if (r.url().endsWith('/webchat/rpc') && r.method() === 'POST') rpcBodies.push(JSON.parse(r.postData()));
    });
    await openChat(page, relay, { session: 'pics' });
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('attach button: preview, upload as raw bytes, rpc with ids, image in the transcript', async () => {
    const png = pngBuffer(12, 9, [200, 40, 40]);
    await page.setInputFiles('#file-input', { name: 'red.png', mimeType: 'image/png', buffer: png });
    await page.waitForSelector('#attach-previews .attach-preview img');
    assert.match(await page.getAttribute('#attach-previews img', 'src'), /^blob:/);
    await sendMessage(page, 'look at this');
    await page.waitForSelector('#messages .msg.user img');
    assert.equal(await page.isVisible('#attach-previews'), false, 'previews cleared after sending');
    assert.equal(uploads.length, 1);
    assert.equal(uploads[0].type, 'image/png');
    await waitFor(() => uploadAnswers.length >= 1, { what: 'the upload answer' });
    const answer = uploadAnswers[0];
    assert.equal(answer?.ok, true, JSON.stringify(answer));
    assert.equal(answer.size, png.length, 'the raw bytes were uploaded');
    assert.equal(answer.mimeType, 'image/png');
    const body = rpcBodies.at(-1);
    assert.equal(body.attachments.length, 1);
    assert.ok(body.attachments[0].id, 'rpc references the upload by id');
    // The relay's attachment needs the bearer token, which an <img src>
    // cannot send: fetched with it, and shown from a blob: URL.
    const attachment = await page.getAttribute('#messages .msg.user img', 'data-attachment');
    assert.match(attachment, /^attachments\//, 'a relative URL of the relay');
    await page.waitForFunction(() => /^blob:/.test(document.querySelector('#messages .msg.user img')?.src || ''));
    await page.waitForFunction(() => {
      const img = document.querySelector('#messages .msg.user img');
      return img && img.complete && img.naturalWidth === 12 && img.naturalHeight === 9;
    });
    assert.equal(await page.innerText('#messages .msg.user .text'), 'look at this');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: look at this');
    await page.waitForSelector('#stop', { state: 'hidden' });
    assert.equal(await page.locator('#pending .msg').count(), 0, 'no pending bubble left behind');
    assert.equal(await page.locator('.msg.user >> text=look at this').count(), 1, 'the message is shown once');
    // and after a reload, from the store
    await page.reload();
    await page.waitForFunction(() => {
      const img = document.querySelector('#messages .msg.user img');
      return img && img.complete && img.naturalWidth === 12;
    });
  });

  it('refuses files over 10 MiB with a clear message', async () => {
    const big = Buffer.alloc(10 * 1024 * 1024 + 1, 1);
    await page.setInputFiles('#file-input', { name: 'huge.png', mimeType: 'image/png', buffer: big });
    await page.waitForSelector('#composer-error:not([hidden])');
    assert.match(await page.innerText('#composer-error'), /huge\.png.*at most 10\.0 MiB/);
    assert.equal(await page.locator('#attach-previews .attach-preview').count(), 0);
  });

  it('refuses types the relay does not take and more than 8 files per message', async () => {
    await page.setInputFiles('#file-input', { name: 'tool.exe', mimeType: 'application/x-msdownload', buffer: Buffer.from('MZ') });
    await page.waitForSelector('#composer-error:not([hidden])');
    assert.match(await page.innerText('#composer-error'), /tool\.exe.*not an image, a text file or a PDF/);
    const files = Array.from({ length: 9 }, (_, i) => ({ name: `p${i}.png`, mimeType: 'image/png', buffer: pngBuffer(4, 4, [i * 25, 80, 120]) }));
    await page.setInputFiles('#file-input', files);
    await page.waitForSelector('#composer-error:not([hidden])');
    assert.match(await page.innerText('#composer-error'), /At most 8 files/);
    assert.equal(await page.locator('#attach-previews .attach-preview').count(), 8);
    // remove one with its × button
    await page.click('#attach-previews .attach-preview:first-child .remove');
    assert.equal(await page.locator('#attach-previews .attach-preview').count(), 7);
    for (let i = 0; i < 7; i++) await page.click('#attach-previews .attach-preview:first-child .remove');
    assert.equal(await page.isVisible('#attach-previews'), false);
  });

  it('paste and drag-and-drop add images too', async () => {
    const b64 = pngBuffer(6, 6, [20, 160, 60]).toString('base64');
    await page.evaluate(async (data) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const file = new File([bytes], 'pasted.png', { type: 'image/png' });
      const dt = new DataTransfer();
      dt.items.add(file);
      const input = document.getElementById('input');
      input.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    }, b64);
    await page.waitForFunction(() => document.querySelectorAll('#attach-previews .attach-preview').length === 1);
    await page.evaluate(async (data) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
      const target = document.getElementById('scroller');
      target.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt, bubbles: true, cancelable: true }));
      target.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      window.__overlayShown = !document.getElementById('drop-overlay').hidden;
      target.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, b64);
    await page.waitForFunction(() => document.querySelectorAll('#attach-previews .attach-preview').length === 2);
    assert.equal(await page.evaluate(() => window.__overlayShown), true, 'drop overlay shown while dragging');
    assert.equal(await page.isVisible('#drop-overlay'), false);
    const before = uploads.length;
    await sendMessage(page, 'two pictures');
    await page.waitForFunction(() => [...document.querySelectorAll('#messages .msg.user')].some((m) => m.querySelectorAll('img').length === 2));
    assert.equal(uploads.length - before, 2);
    assert.equal(rpcBodies.at(-1).attachments.length, 2);
  });

  it('an image of the relay in a markdown reply is shown too (fetched with the token)', async () => {
    const up = await fetch(`${relay.origin}/webchat/attachments`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${relay.token}`, 'Content-Type': 'image/png' },
      body: pngBuffer(7, 5),
    });
    const { id } = await up.json();
    // the echo agent answers with our markdown
    await sendMessage(page, `![drawn](attachments/${id})`);
    await page.waitForFunction(() => {
      const img = document.querySelector('#messages .msg.assistant .markdown img[data-attachment]');
      return img && /^blob:/.test(img.src) && img.complete && img.naturalWidth === 7;
    });
    assert.deepEqual(page.problems, []);
  });
});
