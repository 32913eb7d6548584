// The sidebar's live-status line: "N windows · M runs" from
// GET /webchat/status, updated when another tab opens and closes.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { suiteFixture, newPage, openChat, waitFor } from './harness.mjs';

describe('live status', () => {
  const fx = suiteFixture();

  it('shows the window count and follows a second tab opening and closing', async () => {
    const page = await newPage(fx.browser);
    await openChat(page, fx.relay, { session: 'live' });
    const line = () => page.locator('#live-status').textContent();
    // Refreshed when the stream connects, then every few seconds.
    await waitFor(async () => (await line()) === '1 window · 0 runs', { what: 'one window', timeout: 15000 });
    const other = await page.context().newPage();
    await other.goto(page.url());
    await waitFor(async () => (await line()) === '2 windows · 0 runs', { what: 'two windows', timeout: 15000 });
    assert.equal(await other.locator('#live-status').textContent(), '2 windows · 0 runs');
    await other.close();
    await waitFor(async () => (await line()) === '1 window · 0 runs', { what: 'back to one window', timeout: 15000 });
  });
});
