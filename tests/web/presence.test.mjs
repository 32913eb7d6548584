// Presence: focus, blur and visibility changes are reported with
// POST /webchat/presence {client, session, focused}; one client id per tab.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, launchBrowser, newPage, openChat, missingPrerequisite, waitFor } from './harness.mjs';

describe('presence', () => {
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

  it('reports focus and blur with a stable per-tab client id and the session', async () => {
    const page = await newPage(browser);
    const reports = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/webchat/presence') && r.method() === 'POST') reports.push(JSON.parse(r.postData()));
    });
    await openChat(page, relay, { session: 'here' });
    await page.evaluate(() => {
      // headless pages never lose real focus: simulate leaving the tab
      Object.defineProperty(document, 'hasFocus', { value: () => false, configurable: true });
      window.dispatchEvent(new Event('blur'));
    });
    await waitFor(() => reports.some((r) => r.focused === false), { what: 'a focused:false report' });
    await page.evaluate(() => {
      Object.defineProperty(document, 'hasFocus', { value: () => true, configurable: true });
      window.dispatchEvent(new Event('focus'));
    });
    await waitFor(() => reports.findLastIndex((r) => r.focused === true) > reports.findIndex((r) => r.focused === false), { what: 'a focused:true report after the blur' });
    assert.ok(reports.length >= 2, `${reports.length} presence reports`);
    const ids = new Set(reports.map((r) => r.client));
    assert.equal(ids.size, 1, 'one client id per tab');
    assert.match([...ids][0], /^[0-9a-f-]{36}$/);
    assert.ok(reports.every((r) => r.session === 'here'));
    const hidden = page.waitForRequest((r) => r.url().endsWith('/webchat/presence') && JSON.parse(r.postData()).focused === false);
    await page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await hidden;
    // the same tab keeps its id across a reload; another tab has its own
    const afterReload = page.waitForRequest((r) => r.url().endsWith('/webchat/presence'));
    await page.reload();
    assert.equal(JSON.parse((await afterReload).postData()).client, [...ids][0], 'same tab, same id after a reload');
    const other = await page.context().newPage();
    const otherReport = other.waitForRequest((r) => r.url().endsWith('/webchat/presence'));
    await other.goto(page.url());
    const o = JSON.parse((await otherReport).postData());
    assert.notEqual(o.client, [...ids][0]);
    await page.context().close();
  });
});
