// Issue 17 items 6 and 7: text files and PDFs as attachments (their text
// reaches the agent, the file downloads back), the limits the relay serves
// in /webchat/info used by the composer, a refused file's clear error, and an
// image queued while the relay is down surviving a reload (IndexedDB) and
// being sent exactly once.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  Relay, tempHome, launchBrowser, newPage, openChat, sendMessage, missingPrerequisite, pngBuffer, waitFor, waitForConnected,
} from './harness.mjs';

/**
 * A minimal valid one-page PDF showing `lines` in Helvetica, its
 * cross-reference offsets computed from the bytes (no PDF tool needed;
 * the same construction as tests/tests/attachments.rs).
 */
function makePdf(lines) {
  const content = `BT /F1 14 Tf 72 720 Td 18 TL\n${lines.map((l) => `(${l}) Tj T*\n`).join('')}ET\n`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>',
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>',
    `<< /Length ${content.length} >>\nstream\n${content}endstream`,
  ];
  let pdf = '%PDF-1.4\n';
  const offsets = [];
  objects.forEach((o, i) => {
    offsets.push(pdf.length);
    pdf += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = pdf.length;
  pdf += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const o of offsets) pdf += `${String(o).padStart(10, '0')} 00000 n \n`;
  pdf += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(pdf, 'latin1');
}

/** The version and shell files the relay put into its sw.js (as pwa.test.mjs reads them). */
async function shellCached(page, relay) {
  const body = await (await fetch(`${relay.origin}/webchat/sw.js`)).text();
  const version = /const VERSION = "([^"]+)"/.exec(body)[1];
  const urls = JSON.parse(/const SHELL = (\[.*?\]);/.exec(body)[1]).map((f) => new URL(f, `${relay.origin}/webchat/`).href);
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.waitForFunction(() => Boolean(navigator.serviceWorker.controller), null, { timeout: 15000 });
  await waitFor(() => page.evaluate(async ({ name, want }) => {
    if (!(await caches.keys()).includes(name)) return false;
    const have = (await (await caches.open(name)).keys()).map((r) => r.url);
    return want.every((u) => have.includes(u));
  }, { name: `loopchat-shell-${version}`, want: urls }), { what: 'the app shell in Cache Storage' });
}

/** Records the outbox keeps in IndexedDB. */
const storedFiles = (page) => page.evaluate(() => new Promise((resolve) => {
  const req = indexedDB.open('loopchat-outbox', 1);
  req.onupgradeneeded = () => req.result.createObjectStore('files');
  req.onsuccess = () => {
    const tx = req.result.transaction('files', 'readonly');
    const all = tx.objectStore('files').getAllKeys();
    all.onsuccess = () => { resolve(all.result.length); req.result.close(); };
  };
  req.onerror = () => resolve(-1);
}));

describe('file attachments', () => {
  let relay;
  let browser;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    const home = await tempHome();
    await fsp.writeFile(path.join(home, 'config.toml'), 'attachment_limit = 65536\n', { mode: 0o600 });
    relay = await Relay.start({ home });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('a text file and a PDF: named chips, their text reaches the agent, the files download back', async () => {
    const page = await newPage(browser, { acceptDownloads: true });
    const uploads = [];
    const rpcBodies = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/webchat/attachments') && r.method() === 'POST') uploads.push(r.headers()['content-type']);
      if (r.url().endsWith('/webchat/rpc') && r.method() === 'POST') rpcBodies.push(JSON.parse(r.postData()));
    });
    await openChat(page, relay, { session: 'files' });
    const pdf = makePdf(['Quarterly figures', 'Apples sold: 4217']);
    const notes = Buffer.from('# Notes\n- pears ✓\n');
    // A browser gives many text files no type: the page sends them as text/plain.
    await page.setInputFiles('#file-input', [
      { name: 'report.pdf', mimeType: 'application/pdf', buffer: pdf },
      { name: 'notes.log', mimeType: '', buffer: notes },
    ]);
    await page.waitForFunction(() => document.querySelectorAll('#attach-previews .attach-preview.file').length === 2);
    assert.match(await page.innerText('#attach-previews'), /report\.pdf/);
    await sendMessage(page, 'Summarise');
    // echo answers with what the agent was given: the files' text, framed
    await page.waitForSelector('#messages .msg.assistant >> text=Apples sold: 4217', { timeout: 20000 });
    const stored = (await relay.api('GET', 'info?session=files')).json.initialMessages;
    const reply = stored.find((m) => m.role === 'assistant').content;
    assert.match(reply, /^echo: Summarise\n<file name="report\.pdf" type="application\/pdf">\n[^]*Quarterly figures[^]*\n<\/file>/);
    assert.match(reply, /<file name="notes\.log" type="text\/plain">\n# Notes\n- pears ✓\n\n<\/file>$/);
    assert.deepEqual(uploads, ['application/pdf', 'text/plain']);
    assert.deepEqual(rpcBodies.at(-1).attachments.map((a) => a.name), ['report.pdf', 'notes.log']);
    // the user's bubble shows the files, not their text
    assert.equal(await page.innerText('#messages .msg.user .text'), 'Summarise');
    assert.deepEqual(await page.$$eval('#messages .msg.user .msg-file', (els) => els.map((e) => e.textContent)),
      [`report.pdf (${pdf.length} B)`, `notes.log (${notes.length} B)`]);

    // a click downloads the file under its name, byte for byte
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('#messages .msg.user .msg-file >> text=report.pdf'),
    ]);
    assert.equal(download.suggestedFilename(), 'report.pdf');
    assert.deepEqual(await fsp.readFile(await download.path()), pdf);

    await page.reload();
    await page.waitForSelector('#messages .msg.user .msg-file >> text=notes.log');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('the limits are the relay\'s, and a file the relay refuses says why', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'limits' });
    await page.setInputFiles('#file-input', { name: 'big.txt', mimeType: 'text/plain', buffer: Buffer.alloc(70000, 97) });
    await page.waitForSelector('#composer-error:not([hidden])');
    assert.match(await page.innerText('#composer-error'), /big\.txt.*at most 64 KiB/);
    await page.setInputFiles('#file-input', { name: 'archive.zip', mimeType: 'application/zip', buffer: Buffer.from('PK\x03\x04') });
    await page.waitForSelector('#composer-error >> text=/archive\\.zip.*not an image, a text file or a PDF/');
    assert.equal(await page.locator('#attach-previews .attach-preview').count(), 0);

    // A PDF the relay cannot read: the message is kept, marked failed, with the reason.
    await page.setInputFiles('#file-input', { name: 'broken.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\nnot really\n%%EOF\n') });
    await sendMessage(page, 'read this');
    await page.waitForSelector('#pending .msg.failed', { timeout: 20000 });
    assert.match(await page.innerText('#pending .msg.failed .msg-status'), /the PDF's text could not be read/);
    assert.equal((await relay.api('GET', 'info?session=limits')).json.initialMessages.length, 0, 'nothing was sent');
    await page.context().close();
  });

  it('an image queued while the relay is down survives a reload and is sent exactly once', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'offline-image' });
    await sendMessage(page, 'before');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: before');
    await shellCached(page, relay);

    await relay.stop();
    await page.waitForSelector('#banner:not([hidden])');
    await page.setInputFiles('#file-input', { name: 'offline.png', mimeType: 'image/png', buffer: pngBuffer(11, 7, [10, 120, 200]) });
    await page.waitForSelector('#attach-previews .attach-preview img');
    await page.press('#input', 'Enter'); // image only, no text
    await page.waitForSelector('#pending .msg[data-state="queued"]');
    await waitFor(async () => (await storedFiles(page)) === 1, { what: 'the image in IndexedDB' });

    await page.reload();
    await page.waitForSelector('#pending .msg[data-state="queued"] >> text=offline.png', { timeout: 15000 });

    await relay.restart();
    await waitForConnected(page, 40000);
    await page.waitForFunction(() => [...document.querySelectorAll('#messages .msg.user img')]
      .some((img) => img.complete && img.naturalWidth === 11 && img.naturalHeight === 7), null, { timeout: 40000 });
    await page.waitForFunction(() => !document.querySelector('#pending .msg'), null, { timeout: 15000 });
    const info = (await relay.api('GET', 'info?session=offline-image&limit=50')).json;
    const users = info.initialMessages.filter((m) => m.role === 'user');
    assert.equal(users.length, 2, JSON.stringify(users));
    const images = users[1].content.filter((p) => p.type === 'image');
    assert.equal(images.length, 1, 'the image arrived with its message');
    const bytes = Buffer.from(await (await fetch(`${relay.origin}/webchat/${images[0].url}`, { headers: { Authorization: `Bearer ${relay.token}` } })).arrayBuffer());
    assert.deepEqual(bytes, pngBuffer(11, 7, [10, 120, 200]));
    await waitFor(async () => (await storedFiles(page)) === 0, { what: 'the stored image deleted once sent' });
    assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('loopchat.outbox.v1') || '[]').length), 0);
    await page.context().close();
  });
});
