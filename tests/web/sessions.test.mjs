// Sessions: the sidebar list, New chat, switching without reload, the URL,
// browser back/forward, and isolation between sessions.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, launchBrowser, newPage, openChat, sendMessage, transcriptTexts, missingPrerequisite, waitFor } from './harness.mjs';

describe('sessions', () => {
  let relay;
  let browser;
  let page;

  const sidebarKeys = () => page.$$eval('#session-list .session-item', (els) => els.map((e) => e.dataset.key));
  const currentKey = () => new URL(page.url()).searchParams.get('session');

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start();
    await relay.send('alpha question', 'alpha');
    await relay.send('beta question', 'beta');
    browser = await launchBrowser();
    page = await newPage(browser);
    await openChat(page, relay, { session: 'alpha' });
    await page.evaluate(() => { window.__noReload = 'still here'; });
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('lists sessions newest first with a preview, and marks the current one', async () => {
    await page.waitForFunction(() => document.querySelectorAll('#session-list .session-item').length >= 2);
    const keys = await sidebarKeys();
    assert.deepEqual(keys.filter((k) => k === 'alpha' || k === 'beta'), ['beta', 'alpha']);
    const preview = await page.innerText('#session-list .session-item[data-key="beta"] .session-preview');
    assert.match(preview, /beta question/);
    assert.equal(await page.getAttribute('#session-list .session-item[data-key="alpha"]', 'aria-current'), 'page');
    assert.deepEqual(await transcriptTexts(page), ['alpha question', 'echo: alpha question']);
    // Each session says where it was started: its header's cwd, the
    // relay's working directory (this process's).
    assert.equal(await page.getAttribute('#session-list .session-item[data-key="beta"]', 'title'), process.cwd());
  });

  it('switches sessions from the sidebar without reloading, and puts the key in the URL', async () => {
    await page.click('#session-list .session-item[data-key="beta"]');
    await page.waitForSelector('#messages .msg >> text=echo: beta question');
    assert.equal(currentKey(), 'beta');
    assert.deepEqual(await transcriptTexts(page), ['beta question', 'echo: beta question']);
    // Titled from its first message.
    assert.equal(await page.innerText('#session-title'), 'beta question');
    assert.equal(await page.evaluate(() => window.__noReload), 'still here', 'no page reload');
  });

  it('New chat opens a fresh, empty session with a new key', async () => {
    await page.click('#new-chat');
    await page.waitForFunction(() => /^chat-[a-z0-9]+-[a-z0-9]+$/.test(new URL(location.href).searchParams.get('session') || ''));
    const key = currentKey();
    await page.waitForSelector('#empty:not([hidden])');
    assert.equal(await page.locator('#messages .msg').count(), 0);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'input', 'focus goes to the input');
    await sendMessage(page, 'hello new chat');
    await page.waitForSelector('#messages .msg >> text=echo: hello new chat');
    await page.waitForSelector(`#session-list .session-item[data-key="${key}"]`);
    await page.waitForFunction((k) => document.querySelector('#session-list .session-item')?.dataset.key === k, key);
    assert.equal(await page.evaluate(() => window.__noReload), 'still here');
    // the relay stored it under that key, and only there
    const info = (await relay.api('GET', `info?session=${key}`)).json;
    assert.equal(info.initialMessages.length, 2);
  });

  it('browser back and forward move between sessions', async () => {
    const fresh = currentKey();
    await page.goBack();
    await page.waitForFunction(() => new URL(location.href).searchParams.get('session') === 'beta');
    await page.waitForSelector('#messages .msg >> text=echo: beta question');
    assert.deepEqual(await transcriptTexts(page), ['beta question', 'echo: beta question']);
    await page.goForward();
    await page.waitForSelector('#messages .msg >> text=echo: hello new chat');
    assert.equal(currentKey(), fresh);
    assert.equal(await page.evaluate(() => window.__noReload), 'still here');
  });

  it('Ctrl+Shift+O starts a new chat', async () => {
    const before = currentKey();
    await page.click('#scroller');
    await page.keyboard.press('Control+Shift+O');
    await page.waitForFunction((b) => new URL(location.href).searchParams.get('session') !== b, before);
    assert.match(currentKey(), /^chat-/);
    await page.waitForSelector('#empty:not([hidden])');
  });

  it('events of another session do not leak into the open one', async () => {
    await page.click('#session-list .session-item[data-key="alpha"]');
    await page.waitForSelector('#messages .msg >> text=echo: alpha question');
    await relay.send('beta again', 'beta');
    await page.waitForFunction(() => /beta again/.test(document.querySelector('#session-list .session-item[data-key="beta"] .session-preview')?.textContent || ''), null, { timeout: 20000 });
    assert.deepEqual(await transcriptTexts(page), ['alpha question', 'echo: alpha question']);
  });

  it('?session=KEY in the address opens that session', async () => {
    const other = await newPage(browser);
    await openChat(other, relay, { session: 'beta' });
    await other.waitForSelector('#messages .msg >> text=echo: beta again');
    assert.equal(await other.innerText('#session-title'), 'beta question');
    await other.context().close();
  });

  it('a session named by pi (session_info) shows its name; Rename writes one', async () => {
    // Another tool names the session (a rename by any client appends pi's
    // session_info entry); the sidebar and the header show the name.
    const res = await relay.api('POST', 'rename', { session: 'beta', name: 'Beta project' });
    assert.equal(res.status, 200);
    await page.click('#session-list .session-item[data-key="alpha"]');
    await page.waitForSelector('#messages .msg >> text=echo: alpha question');
    await page.reload();
    await page.waitForSelector('#session-list .session-item[data-key="beta"] .session-name >> text=Beta project');
    // Renaming the open chat from the page.
    page.once('dialog', (d) => d.accept('  Alpha work  '));
    await page.click('#rename-session');
    await page.waitForSelector('#session-list .session-item[data-key="alpha"] .session-name >> text=Alpha work');
    await page.waitForFunction(() => document.querySelector('#session-title').textContent === 'Alpha work');
    const list = (await relay.api('GET', 'sessions')).json;
    assert.equal(list.sessions.find((s) => s.key === 'alpha').title, 'Alpha work');
    // Cancelling the prompt changes nothing.
    page.once('dialog', (d) => d.dismiss());
    await page.click('#rename-session');
    const again = (await relay.api('GET', 'sessions')).json;
    assert.equal(again.sessions.find((s) => s.key === 'alpha').title, 'Alpha work');
  });
});

describe('tidying sessions: rename, delete, restore, pin, and the pushed list', () => {
  let relay;
  let browser;
  let page;

  const sidebarKeys = (p = page) => p.$$eval('#session-list .session-item', (els) => els.map((e) => e.dataset.key));
  const row = (key) => `#session-list .session-row[data-key="${key}"]`;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start();
    await relay.send('first topic', 'one');
    await relay.send('second topic', 'two');
    await relay.send('third topic', 'three');
    browser = await launchBrowser();
    page = await newPage(browser);
    await openChat(page, relay, { session: 'one' });
    await page.waitForSelector(`${row('three')} .session-name >> text=third topic`);
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('renames a session from its row in the sidebar', async () => {
    await page.hover(row('two'));
    page.once('dialog', (d) => d.accept('Project two'));
    await page.click(`${row('two')} .session-rename`);
    await page.waitForSelector(`${row('two')} .session-name >> text=Project two`);
    const list = (await relay.api('GET', 'sessions')).json;
    assert.equal(list.sessions.find((s) => s.key === 'two').title, 'Project two');
  });

  it('pins a session to the top, and unpins it', async () => {
    assert.deepEqual(await sidebarKeys(), ['three', 'two', 'one']);
    await page.hover(row('one'));
    await page.click(`${row('one')} .session-pin`);
    await page.waitForFunction(() => document.querySelector('#session-list .session-item')?.dataset.key === 'one');
    assert.deepEqual(await sidebarKeys(), ['one', 'three', 'two']);
    assert.equal(await page.getAttribute(`${row('one')} .session-pin`, 'aria-pressed'), 'true');
    // Durable in the relay, and shown so after a reload.
    const list = (await relay.api('GET', 'sessions')).json;
    assert.equal(list.sessions[0].key, 'one');
    assert.equal(list.sessions[0].pinned, true);
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    await page.waitForFunction(() => document.querySelector('#session-list .session-item')?.dataset.key === 'one');
    await page.hover(row('one'));
    await page.click(`${row('one')} .session-pin`);
    await page.waitForFunction(() => document.querySelector('#session-list .session-item')?.dataset.key === 'three');
  });

  it('deletes a session to the archive and restores it exactly', async () => {
    const before = (await relay.api('GET', 'history?session=three')).json.messages;
    await page.hover(row('three'));
    await page.click(`${row('three')} .session-delete`);
    await page.waitForFunction(() => !document.querySelector('#session-list .session-item[data-key="three"]'));
    assert.equal((await relay.api('GET', 'sessions')).json.sessions.some((s) => s.key === 'three'), false);
    // The Archived view lists it; Restore brings it back.
    await page.click('#archived-toggle');
    await page.waitForSelector('#session-list .archived-row[data-key="three"] >> text=third topic');
    await page.click('#session-list .archived-row[data-key="three"] .archived-restore');
    await page.waitForSelector('#session-list .archived-empty');
    await page.click('#archived-toggle');
    await page.waitForSelector(`${row('three')} .session-name >> text=third topic`);
    const after = (await relay.api('GET', 'history?session=three')).json.messages;
    assert.deepEqual(after, before, 'the same messages, ids and all');
    await page.click(`${row('three')} .session-item`);
    await page.waitForSelector('#messages .msg >> text=echo: third topic');
  });

  it('deleting the open chat moves to a new one; Delete forever purges it', async () => {
    await page.click(`${row('two')} .session-item`);
    await page.waitForSelector('#messages .msg >> text=echo: second topic');
    await page.hover(row('two'));
    await page.click(`${row('two')} .session-delete`);
    await page.waitForFunction(() => /^chat-/.test(new URL(location.href).searchParams.get('session') || ''));
    await page.waitForSelector('#empty:not([hidden])');
    await page.click('#archived-toggle');
    await page.waitForSelector('#session-list .archived-row[data-key="two"] >> text=Project two');
    page.once('dialog', (d) => d.accept());
    await page.click('#session-list .archived-row[data-key="two"] .archived-purge');
    await page.waitForSelector('#session-list .archived-empty');
    assert.deepEqual((await relay.api('GET', 'archived')).json.sessions, []);
    await page.click('#archived-toggle');
  });

  it('a second window sees a new session, a rename and a delete pushed, without fetching the list', async () => {
    const other = await newPage(browser);
    let listFetches = 0;
    other.on('request', (r) => { if (new URL(r.url()).pathname === '/webchat/sessions') listFetches++; });
    await openChat(other, relay, { session: 'one' });
    await other.waitForSelector(`${row('three')}`);
    // The page fetches the list once at start and once as its stream
    // connects; after that, changes must arrive over the event stream.
    await waitFor(() => listFetches >= 2, { what: 'the two start-up list fetches' });
    const fetchesAtStart = listFetches;
    await relay.send('Pushed here', 'pushed');
    await other.waitForSelector(`${row('pushed')} .session-name >> text=Pushed here`, { timeout: 20000 });
    assert.equal((await sidebarKeys(other))[0], 'pushed');
    await relay.api('POST', 'rename', { session: 'pushed', name: 'Renamed elsewhere' });
    await other.waitForSelector(`${row('pushed')} .session-name >> text=Renamed elsewhere`, { timeout: 20000 });
    await relay.api('POST', 'archive', { session: 'pushed' });
    await other.waitForFunction(() => !document.querySelector('#session-list .session-item[data-key="pushed"]'), null, { timeout: 20000 });
    assert.equal(listFetches, fetchesAtStart, 'no list request: the changes were pushed');
    assert.deepEqual(other.problems, []);
    await other.context().close();
  });
});
