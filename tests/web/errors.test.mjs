// Failure states are shown as such: an agent error is an error bubble with
// Retry; an unreachable relay is a banner (never a blank page) and the page
// recovers by itself when the relay is back.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, launchBrowser, newPage, openChat, sendMessage, transcriptTexts, missingPrerequisite, waitForConnected } from './harness.mjs';

describe('errors', () => {
  let browser;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
  });

  it('an agent error shows an error bubble with Retry; Retry runs the turn again', async () => {
    const relay = await Relay.start({
      env: { LOOPCHAT_AGENT: 'command', LOOPCHAT_AGENT_COMMAND: JSON.stringify(['/bin/sh', '-c', 'echo boom >&2; exit 3']) },
    });
    const page = await newPage(browser);
    try {
      await openChat(page, relay, { session: 'failing' });
      await sendMessage(page, 'please answer');
      await page.waitForSelector('.msg.error .error-note');
      const note = await page.innerText('.msg.error .error-note');
      assert.ok(note.trim().length > 0, 'the error says something');
      assert.equal(await page.locator('.msg.error').count(), 1, 'one error bubble per failed turn');
      assert.equal(await page.locator('.msg.error .retry-btn').count(), 1);
      assert.deepEqual(await transcriptTexts(page, 'user'), ['please answer'], 'the user message stays');
      await page.waitForSelector('#stop', { state: 'hidden' });
      await page.click('.msg.error .retry-btn');
      await page.waitForFunction(() => document.querySelectorAll('.msg.error').length === 2, null, { timeout: 15000 }).catch(async (e) => { console.log('DUMP', await page.$eval('.transcript', (x) => x.innerText)); throw e; });
      assert.deepEqual(await transcriptTexts(page, 'user'), ['please answer', 'please answer']);
      assert.equal(await page.locator('#pending .msg').count(), 0, 'nothing left pending');
      assert.deepEqual(page.problems, []);
    } finally {
      await page.context().close();
      await relay.cleanup();
    }
  });

  it('an unreachable relay shows a banner, not a blank page, and the page recovers when it is back', async () => {
    const relay = await Relay.start();
    const page = await newPage(browser);
    try {
      await openChat(page, relay);
      await sendMessage(page, 'still here later');
      await page.waitForSelector('#messages .msg.assistant >> text=echo: still here later');
      await relay.stop();
      await page.waitForSelector('#banner:not([hidden])');
      assert.match(await page.innerText('#banner'), /relay|connection/i);
      // the transcript stays on screen while offline
      assert.deepEqual(await transcriptTexts(page, 'user'), ['still here later']);
      await page.click('#banner-action'); // "Reconnect now" while it is still down: still a banner
      await page.waitForSelector('#banner:not([hidden])');
      await relay.restart();
      await waitForConnected(page, 40000);
      await sendMessage(page, 'back again');
      await page.waitForSelector('#messages .msg.assistant >> text=echo: back again');
      assert.deepEqual(await transcriptTexts(page, 'user'), ['still here later', 'back again']);
    } finally {
      await page.context().close();
      await relay.cleanup();
    }
  });

  it('a page opened while the relay is down explains it and loads once the relay answers', async () => {
    const relay = await Relay.start();
    const page = await newPage(browser);
    try {
      await openChat(page, relay);
      // the page's own assets come from the relay: keep them, make the API unreachable
      await page.route('**/webchat/info*', (route) => route.abort('connectionrefused'));
      await page.reload();
      await page.waitForSelector('#banner:not([hidden])');
      assert.match(await page.innerText('#banner'), /cannot be reached/i);
      assert.equal(await page.getAttribute('#app', 'data-state'), 'offline');
      await page.unroute('**/webchat/info*');
      await page.click('#banner-action');
      await page.waitForSelector('#app[data-state="ready"]', { timeout: 40000 });
    } finally {
      await page.context().close();
      await relay.cleanup();
    }
  });
});
