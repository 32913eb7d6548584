// Auth: the token link, the HttpOnly cookie, clean reloads, the 401 state,
// security headers and a clean CSP (no violations).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Relay, launchBrowser, newPage, missingPrerequisite, sendMessage, pngBuffer } from './harness.mjs';

describe('auth', () => {
  let relay;
  let browser;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('the token link sets an HttpOnly cookie and lands on a clean URL', async () => {
    const page = await newPage(browser);
    const redirects = [];
    page.on('response', (r) => { if (r.status() === 302) redirects.push(r.url()); });
    await page.goto(relay.pageUrl({ session: 'main' }));
    await page.waitForSelector('#app[data-state="ready"]');
    assert.ok(redirects.some((u) => u.includes('token=')), 'the relay redirected away from the token URL');
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('token'), null, 'no token in the address bar');
    assert.equal(url.searchParams.get('session'), 'main');
    const history = await page.evaluate(() => history.length);
    assert.ok(history >= 1);
    const cookies = await page.context().cookies();
    const c = cookies.find((x) => x.name === 'loopchat_token');
    assert.ok(c, 'cookie set');
    assert.equal(c.httpOnly, true);
    assert.equal(c.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie.includes('loopchat_token')), false, 'not readable from JS');

    // a reload of the clean URL still works
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    await sendMessage(page, 'after reload');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: after reload');
    assert.deepEqual(page.problems, [], 'no CSP violations or page errors');
    await page.context().close();
  });

  it('without a token the page says it is not authorized and how to fix it', async () => {
    const page = await newPage(browser);
    await page.goto(relay.pageUrl({ token: false }));
    await page.waitForSelector('#auth-screen:not([hidden])');
    const text = await page.innerText('#auth-screen');
    assert.match(text, /not authorized/i);
    assert.match(text, /loopchat serve/);
    assert.equal(await page.isVisible('#composer'), false, 'no composer when unauthorized');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('a wrong token gives the same not-authorized state, and no cookie', async () => {
    const page = await newPage(browser);
    await page.goto(`${relay.origin}/webchat/?token=wrong-token`);
    await page.waitForSelector('#auth-screen:not([hidden])');
    assert.equal(new URL(page.url()).searchParams.get('token'), null);
    assert.equal((await page.context().cookies()).some((c) => c.name === 'loopchat_token'), false);
    await page.context().close();
  });

  it('serves the UI with a strict CSP and security headers', async () => {
    const res = await fetch(`${relay.origin}/webchat/`);
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy') || '';
    for (const d of ["default-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "connect-src 'self'"]) {
      assert.ok(csp.includes(d), `CSP has ${d}: ${csp}`);
    }
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const html = await res.text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline scripts');
    assert.doesNotMatch(html, /\sstyle\s*=/i, 'no inline style attributes');
    assert.doesNotMatch(html, /https?:\/\/(?!127\.0\.0\.1)/, 'no third-party URLs');
    for (const asset of ['app.js', 'style.css', 'favicon.svg', 'js/transcript.js']) {
      const r = await fetch(`${relay.origin}/webchat/${asset}`);
      assert.equal(r.status, 200, asset);
    }
  });
  it('a page from another local web server cannot make the agent act, though the cookie goes along', async () => {
    // Any loopback port is the same *site*, so the SameSite=Strict cookie is
    // sent with requests from another local server's page. Only the relay's
    // same-origin rule stands between that page and a turn.
    const up = await fetch(`${relay.origin}/webchat/attachments`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${relay.token}`, 'Content-Type': 'image/png' },
      body: pngBuffer(4, 4),
    });
    assert.equal(up.status, 200);
    const { id } = await up.json();
    const evil = http.createServer((req, res) => {
      res.setHeader('Content-Type', 'text/html');
      res.end(`<!doctype html><title>evil</title><body>
        <img id="probe" src="${relay.origin}/webchat/attachments/${id}">
        <script>
          window.attempts = Promise.all([
            fetch('${relay.origin}/webchat/rpc', { method: 'POST', mode: 'no-cors', credentials: 'include',
              headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ text: 'csrf turn', session: 'csrf' }) }),
            fetch('${relay.origin}/webchat/notify', { method: 'POST', mode: 'no-cors', credentials: 'include',
              headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ title: 'csrf alert' }) }),
          ].map((p) => p.then(() => 'sent', (e) => String(e))));
        </script></body>`);
    });
    await new Promise((resolve) => evil.listen(0, '127.0.0.1', resolve));
    const evilOrigin = `http://127.0.0.1:${evil.address().port}`;
    try {
      const page = await newPage(browser);
      await page.goto(relay.pageUrl({ session: 'main' }));
      await page.waitForSelector('#app[data-state="ready"]');
      await page.goto(`${evilOrigin}/`);
      const outcomes = await page.evaluate(() => window.attempts);
      assert.deepEqual(outcomes, ['sent', 'sent'], 'the browser sent both requests');
      // Control: the image, a cookie-authenticated GET without Origin, loaded
      // from the evil page. So the cookie really did go along, and the turn
      // below was refused by the Origin rule, not for want of credentials.
      await page.waitForFunction(() => document.getElementById('probe').complete);
      assert.ok(await page.evaluate(() => document.getElementById('probe').naturalWidth) > 0,
        'the cookie went along with a cross-port request');
      const history = await relay.api('GET', 'history?session=csrf');
      assert.equal(history.status, 200);
      assert.deepEqual(history.json.messages, [], 'no turn was made from the other page');
      const notes = await relay.api('GET', 'notifications');
      assert.ok(!notes.text.includes('csrf alert'), 'no notification was posted from the other page');
      await page.context().close();
    } finally {
      evil.close();
    }
  });
});
