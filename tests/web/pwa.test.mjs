// The installable app (issue 14, items 3 and 4): the manifest and the
// installability check, the service worker's offline shell (and that it
// never stores an API answer), the swap of the cached shell when the relay's
// bundle changes, the install prompt, and the unread badge and title.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, CHROMIUM_ARGS, tempHome, Relay, launchBrowser, newPage, openChat, asReturningUser, sendMessage, transcriptTexts, missingPrerequisite, waitFor, waitForConnected, screenshot,
} from './harness.mjs';

/** The version and the shell file list the relay put into its sw.js. */
async function workerOf(relay) {
  const body = await (await fetch(`${relay.origin}/webchat/sw.js`)).text();
  const version = /const VERSION = "([^"]+)"/.exec(body)[1];
  const files = JSON.parse(/const SHELL = (\[.*?\]);/.exec(body)[1]);
  return { version, files, urls: files.map((f) => new URL(f, `${relay.origin}/webchat/`).href) };
}

/** Every cache and every URL in it, as the page sees Cache Storage. */
const cacheContents = (page) => page.evaluate(async () => {
  const out = {};
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    out[name] = (await cache.keys()).map((r) => r.url);
  }
  return out;
});

/** Wait until the worker controls the page and its cache holds the whole shell of `version`. */
async function shellCached(page, worker) {
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.waitForFunction(() => Boolean(navigator.serviceWorker.controller), null, { timeout: 15000 });
  return waitFor(async () => {
    const c = await cacheContents(page);
    const names = Object.keys(c);
    return names.length === 1 && names[0] === `loopchat-shell-${worker.version}`
      && worker.urls.every((u) => c[names[0]].includes(u)) ? c : null;
  }, { what: `the shell of ${worker.version} in Cache Storage` });
}

/** Every cached URL is a shell file: no API answer is in Cache Storage. */
async function assertOnlyShellCached(page, worker) {
  const contents = await cacheContents(page);
  const shell = new Set(worker.urls);
  for (const [name, urls] of Object.entries(contents)) {
    assert.match(name, /^loopchat-shell-/);
    for (const u of urls) assert.ok(shell.has(u), `${u} in cache ${name} is not a shell file`);
  }
}

describe('installable app', () => {
  let relay;
  let browser;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start({ env: { LOOPCHAT_ECHO_DELAY_MS: '20' } });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('the manifest is valid and the page counts as installable', async () => {
    // A profile on disk: Chromium never offers installs in an incognito-like context.
    const profile = await tempHome('loopchat-web-profile-');
    const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    await asReturningUser(context);
    try {
      const page = context.pages()[0] || await context.newPage();
      await openChat(page, relay);
      await shellCached(page, await workerOf(relay));
      const cdp = await context.newCDPSession(page);
      const manifest = await cdp.send('Page.getAppManifest');
      assert.deepEqual(manifest.errors, [], JSON.stringify(manifest.errors));
      assert.match(manifest.url, /\/webchat\/manifest\.webmanifest$/);
      const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
      assert.deepEqual(installabilityErrors, [], JSON.stringify(installabilityErrors));
    } finally {
      await context.close();
      await fsp.rm(profile, { recursive: true, force: true });
    }
  });

  it('offline: the worker serves the shell, the banner shows, the session list is kept, and a message typed offline is sent once', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'offline' });
    await sendMessage(page, 'before the outage');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: before the outage');
    // the list as the relay gave it (not just the row of the open session)
    await page.waitForSelector('#session-list [data-key="offline"] >> text=echo: before the outage');
    const worker = await workerOf(relay);
    await shellCached(page, worker);

    await relay.stop();
    await page.reload();
    // the app, not the browser's error page
    await page.waitForSelector('#app[data-state="offline"]', { timeout: 15000 });
    await page.waitForSelector('#banner:not([hidden])');
    assert.equal(await page.getAttribute('#banner', 'data-state'), 'offline');
    assert.match(await page.innerText('#banner-text'), /relay cannot be reached/i);
    // the session list as last seen, from localStorage
    await page.waitForSelector('#session-list [data-key="offline"] >> text=echo: before the outage');
    assert.match(await page.innerText('#session-list-status'), /offline: the list as last seen/i);
    assert.equal(await page.isHidden('#empty'), true, 'an unloaded session is not called empty');
    await screenshot(page, 'pwa-offline-shell');

    await sendMessage(page, 'typed while offline');
    await page.waitForSelector('#pending .msg[data-state="queued"] >> text=typed while offline');
    // a reload while still offline keeps the queued message on screen
    await page.reload();
    await page.waitForSelector('#pending .msg[data-state="queued"] >> text=typed while offline', { timeout: 15000 });

    await relay.restart();
    await page.waitForSelector('#messages .msg.assistant >> text=echo: typed while offline', { timeout: 40000 });
    await waitForConnected(page, 40000);
    await page.waitForFunction(() => !document.querySelector('#pending .msg'), null, { timeout: 15000 });
    const users = await transcriptTexts(page, 'user');
    assert.equal(users.filter((t) => t === 'typed while offline').length, 1);
    const info = (await relay.api('GET', 'info?session=offline&limit=50')).json;
    const texts = info.initialMessages.map((m) => (typeof m.content === 'string' ? m.content : m.content.map((p) => p.text || '').join('')));
    assert.deepEqual(texts, ['before the outage', 'echo: before the outage', 'typed while offline', 'echo: typed while offline']);

    await assertOnlyShellCached(page, worker);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('no API answer is ever in Cache Storage', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'nocache' });
    const worker = await workerOf(relay);
    await shellCached(page, worker);
    // exercise the API from a page the worker controls: history, sessions, alerts, events, an upload
    await sendMessage(page, 'hello cache');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: hello cache');
    await relay.notify({ title: 'cache check', body: 'x' });
    await page.waitForSelector('#bell-count:not([hidden])');
    await page.evaluate(async () => {
      const token = localStorage.getItem('loopchat.token');
      const h = { Authorization: `Bearer ${token}` };
      for (const p of ['info?session=nocache&limit=5', 'sessions', 'notifications', 'history?session=nocache&limit=5']) {
        await fetch(p, { headers: h }).then((r) => r.text());
      }
      // an attachment, uploaded and read back (a GET the worker must leave alone)
      const png = Uint8Array.from(atob('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='), (c) => c.charCodeAt(0));
      const up = await fetch('attachments', { method: 'POST', headers: { ...h, 'Content-Type': 'image/png' }, body: png }).then((r) => r.json());
      await fetch(new URL(up.url, location.href), { headers: h }).then((r) => r.blob());
    });
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    await assertOnlyShellCached(page, worker);
    const all = Object.values(await cacheContents(page)).flat();
    assert.ok(all.length >= worker.files.length, 'the shell is cached');
    assert.ok(!all.some((u) => /\/webchat\/(info|events|sessions|notifications|history|rpc|attachments|ws)\b/.test(u)), all.join('\n'));
    await page.context().close();
  });

  it('the page runs as one script, and the worker answers its versioned files from its cache', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'bundle' });
    const worker = await workerOf(relay);
    await shellCached(page, worker);
    const versioned = worker.files.filter((f) => f.includes('?v='));
    assert.deepEqual(versioned.map((f) => f.split('?')[0]).sort(), ['app.bundle.js', 'boot.js', 'css/highlight.css', 'style.css']);
    const tag = versioned[0].split('?v=')[1];

    const scripts = [];
    page.on('request', (r) => { if (r.resourceType() === 'script') scripts.push(r.url()); });
    const byWorker = [];
    const onWorkerRequest = (r) => { if (r.serviceWorker()) byWorker.push(r.url()); };
    page.context().on('request', onWorkerRequest);
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    await page.waitForSelector('#session-title >> text=bundle');
    page.context().off('request', onWorkerRequest);
    // boot.js and the bundle, named with the version; no module one by one
    const paths = scripts.map((u) => new URL(u)).map((u) => u.pathname + u.search);
    assert.deepEqual(paths, [`/webchat/boot.js?v=${tag}`, `/webchat/app.bundle.js?v=${tag}`]);
    // the worker asked the relay for the page (network first), never for a versioned file
    assert.ok(byWorker.some((u) => new URL(u).pathname === '/webchat/'), byWorker.join('\n'));
    assert.ok(!byWorker.some((u) => u.includes('?v=')), byWorker.join('\n'));
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('a new bundle replaces the cached shell: one cache, of the new version', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'upgrade' });
    const v1 = await workerOf(relay);
    await shellCached(page, v1);

    // the same home and port, another bundle (the test-only salt changes the version)
    await relay.stop();
    relay.env = { ...relay.env, LOOPCHAT_ASSET_SALT: 'upgrade-test' };
    await relay.start();
    const v2 = await workerOf(relay);
    assert.notEqual(v2.version, v1.version);
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    // the new worker takes over and the old cache is gone
    await shellCached(page, v2);

    // offline again: the page comes from the new version's cache
    await relay.stop();
    await page.reload();
    await page.waitForSelector('#app[data-state="offline"]', { timeout: 15000 });
    const c = await cacheContents(page);
    assert.deepEqual(Object.keys(c), [`loopchat-shell-${v2.version}`]);
    await relay.start();
    await waitForConnected(page, 40000);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('the install prompt: not on the first visit, on the second, gone once dismissed', async () => {
    const context = await browser.newContext();
    await asReturningUser(context);
    const first = await context.newPage();
    await openChat(first, relay);
    assert.equal(await first.isHidden('#install-prompt'), true, 'not on the first visit');
    // a reload is the same visit
    await first.reload();
    await first.waitForSelector('#app[data-state="ready"]');
    assert.equal(await first.isHidden('#install-prompt'), true, 'not after a reload of the first visit');
    await first.close();

    const second = await context.newPage();
    await openChat(second, relay);
    await second.waitForSelector('#install-prompt:not([hidden])');
    // Headless Chromium fires no beforeinstallprompt: the prompt says how to install by hand.
    const mode = await second.getAttribute('#install-prompt', 'data-mode');
    if (mode === 'manual') assert.match(await second.innerText('#install-text'), /Install loopchat/);
    else assert.equal(await second.isVisible('#install-accept'), true);
    await screenshot(second, 'pwa-install-prompt');
    await second.click('#install-dismiss');
    await second.waitForSelector('#install-prompt', { state: 'hidden' });
    await second.close();

    const third = await context.newPage();
    await openChat(third, relay);
    assert.equal(await third.isHidden('#install-prompt'), true, 'a dismissed prompt stays dismissed');
    await context.close();
  });

  it('the install prompt never shows in the installed app (display-mode: standalone)', async () => {
    const context = await browser.newContext();
    await asReturningUser(context);
    await context.addInitScript(() => {
      const real = window.matchMedia.bind(window);
      window.matchMedia = (q) => (/display-mode:\s*standalone/.test(q)
        ? { matches: true, media: q, addEventListener() {}, removeEventListener() {} }
        : real(q));
    });
    for (let visit = 1; visit <= 3; visit++) {
      const page = await context.newPage();
      await openChat(page, relay);
      assert.equal(await page.isHidden('#install-prompt'), true, `visit ${visit}`);
      await page.close();
    }
    await context.close();
  });

  it('the unread count is on the app badge and in the title', async () => {
    // a relay of its own: no alerts from the other tests
    const own = await Relay.start();
    const context = await browser.newContext();
    await asReturningUser(context);
    await context.addInitScript(() => {
      window.__badge = [];
      navigator.setAppBadge = (n) => { window.__badge.push(n); return Promise.resolve(); };
      navigator.clearAppBadge = () => { window.__badge.push(0); return Promise.resolve(); };
    });
    try {
      const page = await context.newPage();
      await openChat(page, own, { session: 'badge' });
      assert.equal(await page.title(), 'badge — loopchat');
      await own.notify({ title: 'badge one', body: 'x' });
      await page.waitForFunction(() => document.title === '(1) badge — loopchat');
      await own.notify({ title: 'badge two', body: 'y' });
      await page.waitForFunction(() => document.title === '(2) badge — loopchat');
      assert.deepEqual(await page.evaluate(() => window.__badge), [1, 2]);
      // the count follows a session switch too
      await page.click('#new-chat');
      await page.waitForFunction(() => /^\(2\) .+ — loopchat$/.test(document.title) && !document.title.includes('badge'));
      await page.click('#bell');
      await page.click('#mark-read');
      await page.waitForFunction(() => /^[^(].* — loopchat$/.test(document.title));
      assert.deepEqual(await page.evaluate(() => window.__badge), [1, 2, 0], 'the badge is cleared');
    } finally {
      await context.close();
      await own.cleanup();
    }
  });
});
