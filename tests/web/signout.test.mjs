// Signed out: after `loopchat token rotate` an open window says so ("Signed
// out: open the new URL") instead of looking like a relay that is down, and
// opening the new URL — in the same tab or another — replaces the stored token
// and brings every window of this origin back.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { suiteFixture, newPage, openChat, sendMessage, waitFor } from './harness.mjs';

describe('signed out', () => {
  const fx = suiteFixture();

  it('a rotated token shows the signed-out state, and the new URL signs every tab in again', async () => {
    const a = await newPage(fx.browser);
    try {
      await openChat(a, fx.relay, { session: 'rot' });
      await sendMessage(a, 'before rotation');
      await a.waitForSelector('#messages .msg.assistant >> text=echo: before rotation');
      // a second tab of the same origin, opened without any token
      const b = await a.context().newPage();
      b.problems = [];
      b.on('pageerror', (err) => b.problems.push(`pageerror: ${err.message}`));
      await b.goto(fx.relay.pageUrl({ session: 'rot', token: false }));
      await b.waitForSelector('#messages .msg.assistant >> text=echo: before rotation');
      const old = fx.relay.token;

      const fresh = await fx.relay.rotateToken();
      // Nothing to act on in the page: the relay closes the streams of a
      // rotated token, and the reconnect (or the page's next request) is refused.
      for (const page of [a, b]) {
        await page.waitForSelector('#app[data-state="signed-out"]', { timeout: 30000 });
        assert.match(await page.innerText('#auth-screen'), /Signed out: open the new URL/);
        assert.match(await page.innerText('#auth-screen'), /loopchat serve/);
        assert.equal(await page.isVisible('#composer'), false, 'no composer when signed out');
        assert.equal(await page.isVisible('#banner'), false, 'not shown as a relay that is down');
      }
      assert.equal(await a.evaluate(() => localStorage.getItem('loopchat.token')), old);

      // The new URL pasted into tab A: only its fragment differs, a same-page
      // jump that the page must still act on.
      await a.goto(fx.relay.pageUrl({ session: 'rot' }));
      await a.waitForSelector('#app[data-state="ready"]');
      assert.equal(new URL(a.url()).hash, '', 'the new token left the address bar');
      assert.equal(await a.evaluate(() => localStorage.getItem('loopchat.token')), fresh, 'the stored token was replaced');
      // Tab B saw the new token stored and signed in again by itself.
      await b.waitForSelector('#app[data-state="ready"]');
      await sendMessage(b, 'after rotation');
      await b.waitForSelector('#messages .msg.assistant >> text=echo: after rotation');
      await a.waitForSelector('#messages .msg.assistant >> text=echo: after rotation');
      assert.deepEqual(a.problems, []);
      assert.deepEqual(b.problems, []);
    } finally {
      await a.context().close();
    }
  });

  it('a message sent after the rotation waits for the new URL and is then delivered once', async () => {
    const page = await newPage(fx.browser);
    try {
      await openChat(page, fx.relay, { session: 'queued' });
      const old = fx.relay.token;
      await fx.relay.rotateToken();
      // Wait until the relay refuses the old token (it re-reads the file within a second).
      await waitFor(async () => (await fx.relay.api('GET', 'info', undefined, { Authorization: `Bearer ${old}` })).status === 401,
        { what: 'the old token refused' });
      // Sent whether or not the page has noticed yet (then its composer is
      // hidden, and a message can still come from an earlier keystroke).
      await page.evaluate(() => {
        document.getElementById('input').value = 'typed before it noticed';
        document.getElementById('composer').requestSubmit();
      });
      await page.waitForSelector('#app[data-state="signed-out"]', { timeout: 30000 });
      const queued = await page.evaluate(() => JSON.parse(localStorage.getItem('loopchat.outbox.v1') || '[]'));
      assert.equal(queued.length, 1, 'the message is kept');
      assert.equal(queued[0].state, undefined, 'not marked as refused');
      await page.goto(fx.relay.pageUrl({ session: 'queued' }));
      await page.waitForSelector('#messages .msg.assistant >> text=echo: typed before it noticed');
      const history = await fx.relay.api('GET', 'history?session=queued');
      assert.equal(history.json.messages.filter((m) => m.role === 'user').length, 1, 'delivered exactly once');
    } finally {
      await page.context().close();
    }
  });
});
