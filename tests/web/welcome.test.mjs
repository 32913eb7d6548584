// The welcome tour in a browser: the first visit to /webchat/ goes through it
// (Welcome → what it does → Done: no desktop steps), then the chat opens and
// it does not come back; a new welcome or relay version brings it back once;
// Skip (and Escape) leave it at once. Real relay, real Chromium.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { suiteFixture, newPage, waitForConnected, screenshot, WELCOME_DONE } from './harness.mjs';

const DONE_KEY = 'loopchat.welcome.done';

async function tourStep(page) {
  await page.waitForURL(/\/webchat\/welcome\.html/, { timeout: 15000 });
  return page.evaluate(() => document.querySelector('[data-step]:not([hidden])')?.dataset.step);
}

describe('welcome tour (browser)', () => {
  const fx = suiteFixture();

  it('is shown on the first visit, without the desktop steps, and once', async () => {
    const page = await newPage(fx.browser, { welcome: true });
    await page.goto(fx.relay.pageUrl({ session: 'hello' }));
    assert.equal(await tourStep(page), 'welcome');
    // the token came along: it was taken from the fragment on this page
    assert.ok(!page.url().includes('token='), page.url());
    const steps = await page.evaluate(() => [...document.querySelectorAll('[data-step]')].map((s) => s.dataset.step));
    assert.deepEqual(steps, ['welcome', 'what', 'cli', 'notifications', 'done']);
    await screenshot(page, 'welcome-browser-1');
    await page.click('#welcome-next');
    assert.equal(await page.evaluate(() => document.querySelector('[data-step]:not([hidden])').dataset.step), 'what');
    await page.click('#welcome-next');
    // the desktop steps are the shell's: straight to Done
    assert.equal(await page.evaluate(() => document.querySelector('[data-step]:not([hidden])').dataset.step), 'done');
    assert.match(await page.title(), /Welcome \(3\/3\): done/);
    await screenshot(page, 'welcome-browser-done');
    await page.click('#welcome-next');
    await page.waitForURL(/\/webchat\/\?session=hello$/);
    await page.waitForSelector('#app[data-state="ready"]');
    await waitForConnected(page);
    assert.equal(await page.evaluate((k) => JSON.parse(localStorage.getItem(k)), DONE_KEY), WELCOME_DONE);

    // once: a reload and a new visit open the chat directly
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    await page.goto(fx.relay.pageUrl({ session: 'again' }));
    await page.waitForSelector('#app[data-state="ready"]');
    assert.match(page.url(), /\/webchat\/\?session=again/);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('comes back after a version change, and can be skipped', async () => {
    const page = await newPage(fx.browser, { welcome: true });
    await page.goto(fx.relay.pageUrl());
    await tourStep(page);
    // Seen for an older relay: shown again.
    await page.evaluate((k) => localStorage.setItem(k, JSON.stringify('1:0.0.0-older')), DONE_KEY);
    await page.goto(fx.relay.pageUrl({ session: 'skipper' }));
    assert.equal(await tourStep(page), 'welcome');
    await page.click('#welcome-skip');
    await page.waitForURL(/\/webchat\/\?session=skipper$/);
    await page.waitForSelector('#app[data-state="ready"]');
    assert.equal(await page.evaluate((k) => JSON.parse(localStorage.getItem(k)), DONE_KEY), WELCOME_DONE);

    // Escape skips too.
    await page.evaluate((k) => localStorage.removeItem(k), DONE_KEY);
    await page.goto(fx.relay.pageUrl());
    await tourStep(page);
    await page.keyboard.press('Escape');
    await page.waitForURL(/\/webchat\/(\?session=main)?$/);
    await page.waitForSelector('#app[data-state="ready"]');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
  it("the shell's CLI step says whose PATH it looked at", async () => {
    const page = await newPage(fx.browser, { welcome: true });
    await page.goto(fx.relay.pageUrl().replace('/webchat/#', '/webchat/welcome.html?desktop=1#'));
    const status = (cli) => page.evaluate((c) => {
      window.loopchatDesktopStatus({ cli: c, daemon: { name: 'dunst 1', error: null } });
      return { text: document.getElementById('cli-status').textContent, install: !document.getElementById('cli-install').hidden };
    }, cli);
    const install = 'cargo install --locked --path relay';
    assert.deepEqual(await status({ host: null, path: '/usr/bin/loopchat', error: null, install }),
      { text: 'loopchat is on your PATH: /usr/bin/loopchat', install: false });
    assert.deepEqual(await status({ host: 'me@box:22', path: null, error: null, install }),
      { text: 'loopchat is not on the PATH of me@box:22.', install: true });
    assert.deepEqual(await status({ host: 'me@box:22', path: '/opt/bin/loopchat', error: null, install }),
      { text: 'loopchat is on the PATH of me@box:22: /opt/bin/loopchat', install: false });
    // the host could not be asked: no claim either way, no install command
    assert.deepEqual(await status({ host: 'me@box:22', path: null, error: 'the SSH link is down', install }),
      { text: 'Cannot tell whether loopchat is on the PATH of me@box:22 (the SSH link is down).', install: false });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
