// Auth: the #token= link, the token kept in this origin's localStorage and
// sent as a bearer header (no cookie at all), the legacy ?token= link, the
// 401 state, security headers and a clean CSP (no violations), and that no
// credential ever reaches another server on 127.0.0.1.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Relay, launchBrowser, newPage, missingPrerequisite, sendMessage, pngBuffer, waitFor } from './harness.mjs';

/**
 * A web server on another loopback port that records every request it gets
 * (a stand-in for another user's listener on 127.0.0.1:18999).
 */
async function startListener(page = () => '<!doctype html><title>listener</title>listener page') {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method, url: req.url, headers: { ...req.headers } });
    res.setHeader('Content-Type', 'text/html');
    res.end(page(req));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { server, origin, requests, close: () => new Promise((r) => server.close(r)) };
}

/** Nothing in these requests authenticates against the relay: no cookie, no Authorization, no token anywhere. */
function assertNoCredential(requests, token, what) {
  assert.ok(requests.length > 0, `${what}: the listener was reached`);
  for (const r of requests) {
    assert.equal(r.headers.cookie, undefined, `${what}: ${r.url} came with a Cookie header: ${r.headers.cookie}`);
    assert.equal(r.headers.authorization, undefined, `${what}: ${r.url} came with an Authorization header`);
    const all = `${r.url}\n${JSON.stringify(r.headers)}`;
    assert.ok(!all.includes(token), `${what}: the token reached the listener in ${r.url}`);
  }
}

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

  it('the #token= link is kept in localStorage, leaves the address bar, and every request carries it as a bearer', async () => {
    const page = await newPage(browser);
    const toRelay = [];
    page.on('request', (r) => { if (r.url().startsWith(`${relay.origin}/webchat/`)) toRelay.push(r); });
    await page.goto(relay.pageUrl({ session: 'main' }));
    await page.waitForSelector('#app[data-state="ready"]');
    const url = new URL(page.url());
    assert.equal(url.hash, '', 'no fragment left in the address bar');
    assert.equal(url.searchParams.get('token'), null);
    assert.equal(url.searchParams.get('session'), 'main');
    assert.equal(await page.evaluate(() => localStorage.getItem('loopchat.token')), relay.token);
    assert.deepEqual(await page.context().cookies(), [], 'no cookie at all');

    // a reload of the clean URL, and a new tab without any token, still work
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    await sendMessage(page, 'after reload');
    await page.waitForSelector('#messages .msg.assistant >> text=echo: after reload');
    const tab = await page.context().newPage();
    await tab.goto(relay.pageUrl({ session: 'main', token: false }));
    await tab.waitForSelector('#messages .msg.assistant >> text=echo: after reload');

    const api = toRelay.filter((r) => /\/webchat\/(info|sessions|history|rpc|events|notifications|presence)\b/.test(r.url()));
    assert.ok(api.some((r) => r.url().includes('/webchat/events?')), 'the event stream was requested');
    for (const r of api) {
      const headers = await r.allHeaders();
      assert.equal(headers.authorization, `Bearer ${relay.token}`, `bearer on ${r.url()}`);
      assert.equal(headers.cookie, undefined, `no cookie on ${r.url()}`);
    }
    assert.deepEqual(page.problems, [], 'no CSP violations or page errors');
    await page.context().close();
  });

  it('the legacy ?token= link is redirected into the fragment, and no cookie is set', async () => {
    const page = await newPage(browser);
    const redirects = [];
    page.on('response', async (r) => {
      if (r.status() === 302) redirects.push({ url: r.url(), headers: await r.allHeaders() });
    });
    await page.goto(`${relay.origin}/webchat/?token=${relay.token}&session=legacy`);
    await page.waitForSelector('#app[data-state="ready"]');
    assert.equal(redirects.length, 1);
    assert.equal(redirects[0].headers['set-cookie'], undefined, 'the relay set no cookie');
    assert.equal(redirects[0].headers.location, `/webchat/?session=legacy#token=${relay.token}`);
    const url = new URL(page.url());
    assert.equal(url.hash, '');
    assert.equal(url.search, '?session=legacy');
    assert.deepEqual(await page.context().cookies(), []);
    assert.equal(await page.evaluate(() => localStorage.getItem('loopchat.token')), relay.token);
    await page.context().close();
  });

  it('without a token the page says it is not authorized and how to fix it', async () => {
    const page = await newPage(browser);
    await page.goto(relay.pageUrl({ token: false }));
    await page.waitForSelector('#auth-screen:not([hidden])');
    const text = await page.innerText('#auth-screen');
    assert.match(text, /not authorized/i);
    assert.match(text, /loopchat serve/);
    assert.match(text, /#token=/, 'the hint shows the link as it is printed');
    assert.equal(await page.getAttribute('#app', 'data-state'), 'unauthorized');
    assert.equal(await page.isVisible('#composer'), false, 'no composer when unauthorized');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('a wrong token gives the not-authorized state, and no cookie', async () => {
    const page = await newPage(browser);
    await page.goto(`${relay.origin}/webchat/?token=wrong-token`);
    await page.waitForSelector('#auth-screen:not([hidden])');
    assert.equal(new URL(page.url()).searchParams.get('token'), null);
    assert.equal(await page.evaluate(() => localStorage.getItem('loopchat.token')), null, 'a wrong legacy token is not kept');
    assert.deepEqual(await page.context().cookies(), []);
    await page.goto(relay.pageUrl({ token: 'wrong-token' }));
    await page.waitForSelector('#auth-screen:not([hidden])');
    assert.equal(new URL(page.url()).hash, '');
    assert.equal(await page.isVisible('#composer'), false);
    await page.context().close();
  });

  it('serves the UI with a strict CSP and security headers', async () => {
    const res = await fetch(`${relay.origin}/webchat/`);
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy') || '';
    for (const d of ["default-src 'self'", "img-src 'self' data: blob:", "frame-ancestors 'none'", "base-uri 'none'", "connect-src 'self'"]) {
      assert.ok(csp.includes(d), `CSP has ${d}: ${csp}`);
    }
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('set-cookie'), null);
    const html = await res.text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline scripts');
    assert.doesNotMatch(html, /\sstyle\s*=/i, 'no inline style attributes');
    assert.doesNotMatch(html, /https?:\/\/(?!127\.0\.0\.1)/, 'no third-party URLs');
    for (const asset of ['app.js', 'style.css', 'favicon.svg', 'js/transcript.js']) {
      const r = await fetch(`${relay.origin}/webchat/${asset}`);
      assert.equal(r.status, 200, asset);
    }
  });

  it('links to another local server carry no credential: from an alert, from a reply, typed', async () => {
    const listener = await startListener();
    const page = await newPage(browser);
    try {
      await page.goto(relay.pageUrl({ session: 'links' }));
      await page.waitForSelector('#app[data-state="ready"]');

      // (a) an alert whose click points there. The relay may refuse a click
      // that is not one of its own paths (then nothing can be followed); if it
      // takes it, following it must carry nothing.
      const posted = await relay.notify({ title: 'Open the listener', body: 'x', click: `${listener.origin}/webchat/alert` });
      if (posted.status === 200) {
        await page.click('#bell');
        const [popup] = await Promise.all([
          page.context().waitForEvent('page'),
          page.click('#alerts-list .alert-item >> text=Open the listener'),
        ]);
        await popup.waitForLoadState('domcontentloaded');
        await waitFor(() => listener.requests.some((r) => r.url === '/webchat/alert'), { what: 'the alert link' });
        await popup.close();
        assertNoCredential(listener.requests, relay.token, 'alert click');
      } else {
        assert.equal(posted.status, 400, `a foreign click is refused, or followed without credential: ${posted.text}`);
      }

      // (b) a link in an agent reply (the echo agent answers with our markdown)
      await sendMessage(page, `see [the listener](${listener.origin}/webchat/reply)`);
      const link = page.locator(`#messages .msg.assistant a[href="${listener.origin}/webchat/reply"]`);
      await link.waitFor();
      const [popup] = await Promise.all([page.context().waitForEvent('page'), link.click()]);
      await popup.waitForLoadState('domcontentloaded');
      await waitFor(() => listener.requests.some((r) => r.url === '/webchat/reply'), { what: 'the reply link' });
      await popup.close();
      assertNoCredential(listener.requests, relay.token, 'reply link');

      // (c) typed into the address bar of the signed-in tab, and into a new one
      await page.goto(`${listener.origin}/webchat/typed`);
      const tab = await page.context().newPage();
      await tab.goto(`${listener.origin}/webchat/x`);
      assertNoCredential(listener.requests, relay.token, 'typed');
      for (const p of ['/webchat/reply', '/webchat/typed', '/webchat/x']) {
        assert.ok(listener.requests.some((r) => r.url === p), `the listener saw ${p}`);
      }
    } finally {
      await page.context().close();
      await listener.close();
    }
  });

  it('a page from another local web server can neither make the agent act nor read anything', async () => {
    // Any loopback port is the same *site*, and before the token left the
    // cookie for localStorage this page's requests went out with it. Now they
    // carry no credential at all (and the same-origin rule refuses the POSTs
    // besides).
    const up = await fetch(`${relay.origin}/webchat/attachments`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${relay.token}`, 'Content-Type': 'image/png' },
      body: pngBuffer(4, 4),
    });
    assert.equal(up.status, 200);
    const { id } = await up.json();
    const evil = await startListener(() => `<!doctype html><title>evil</title><body>
        <img id="probe" src="${relay.origin}/webchat/attachments/${id}">
        <script>
          const opts = { mode: 'no-cors', credentials: 'include' };
          window.attempts = Promise.all([
            fetch('${relay.origin}/webchat/rpc', { method: 'POST', ...opts,
              headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ text: 'csrf turn', session: 'csrf' }) }),
            fetch('${relay.origin}/webchat/notify', { method: 'POST', ...opts,
              headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ title: 'csrf alert' }) }),
            fetch('${relay.origin}/webchat/info', opts),
            fetch('${relay.origin}/webchat/x', opts),
            fetch('${relay.origin}/webchat/info', { credentials: 'include' }).then((r) => r.text()),
            fetch('/webchat/x', { credentials: 'include' }),
          ].map((p) => p.then(() => 'sent', (e) => String(e))));
        </script></body>`);
    try {
      const page = await newPage(browser);
      await page.goto(relay.pageUrl({ session: 'main' }));
      await page.waitForSelector('#app[data-state="ready"]');
      const answers = [];
      // Only what the other page sent: the chat page may still finish a call of
      // its own (the session list fetched when its stream connects) as it goes.
      page.on('response', (r) => {
        const from = r.request().headers().referer || '';
        if (r.url().startsWith(relay.origin) && from.startsWith(evil.origin)) answers.push({ url: r.url(), status: r.status() });
      });
      await page.goto(`${evil.origin}/`);
      const outcomes = await page.evaluate(() => window.attempts);
      assert.deepEqual(outcomes.slice(0, 4), ['sent', 'sent', 'sent', 'sent'], 'the browser sent the requests');
      assert.match(outcomes[4], /TypeError/, 'a CORS read fails');
      assert.equal(outcomes[5], 'sent');
      await waitFor(() => evil.requests.some((r) => r.url === '/webchat/x'), { what: "the page's own /webchat/x" });
      await page.waitForFunction(() => document.getElementById('probe').complete);
      assert.equal(await page.evaluate(() => document.getElementById('probe').naturalWidth), 0,
        'the image did not load: no credential went along with the cross-port request');
      // Every answer the relay gave that page was a refusal.
      // Every answer the relay gave that page (as far as the browser let it
      // through: an image or a CORS read that fails shows no answer) was a refusal.
      await waitFor(() => ['rpc', 'notify', 'info'].every((p) => answers.some((a) => a.url.includes(`/webchat/${p}`))),
        { what: 'the relay answers' });
      for (const a of answers) assert.ok(a.status >= 400, `${a.url} answered ${a.status}`);
      assert.ok(answers.some((a) => a.url.includes('/webchat/info') && a.status === 401), 'info refused for want of a token');
      assertNoCredential(evil.requests, relay.token, 'the other page');
      const history = await relay.api('GET', 'history?session=csrf');
      assert.equal(history.status, 200);
      assert.deepEqual(history.json.messages, [], 'no turn was made from the other page');
      const notes = await relay.api('GET', 'notifications');
      assert.ok(!notes.text.includes('csrf alert'), 'no notification was posted from the other page');
      await page.context().close();
    } finally {
      await evil.close();
    }
  });
});
