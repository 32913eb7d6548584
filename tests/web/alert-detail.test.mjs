// Issue 13 in Chromium: an image alert posted with the CLI and a notify-only
// token shows in the detail view (sanitized markdown, the image, meta) and
// its file is gone after dismissal; read state is the relay's (a second
// window follows); the Checks panel's Run button and the detail view's Run
// again raise and resolve one check alert; "Ask the agent" starts a turn
// whose first message carries the alert's body and links it back.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import {
  Relay, RELAY_BIN, tempHome, launchBrowser, newPage, openChat, missingPrerequisite, pngBuffer, waitFor,
} from './harness.mjs';

function cli(home, args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(RELAY_BIN, args, {
      env: { ...process.env, LOOPCHAT_HOME: home, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('alert detail view, checks panel, ask the agent', () => {
  let relay;
  let browser;
  let page;
  let flag;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    const home = await tempHome();
    flag = path.join(home, 'fixed');
    await fsp.writeFile(path.join(home, 'config.toml'), [
      '[[checks]]',
      'name = "flaky"',
      `shell = "if [ -e ${flag} ]; then echo all good; else echo 'disk sda1 is 97% full'; exit 3; fi"`,
      'every = "1h"',
      '',
    ].join('\n'), { mode: 0o600 });
    relay = await Relay.start({ home });
    browser = await launchBrowser();
    page = await newPage(browser);
    await openChat(page, relay);
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  const openBell = async (p = page) => {
    if (await p.isHidden('#alerts-panel')) await p.click('#bell');
    await p.waitForSelector('#alerts-panel:not([hidden])');
  };
  const row = (title, p = page) => p.locator('#alerts-list .alert-row', { has: p.locator('.alert-title > span:first-child', { hasText: new RegExp(`^${title}`) }) });

  it('shows an image alert from a notify-only token, and dismissing it removes its file', async () => {
    const made = await cli(relay.home, ['token', 'create', '--scope', 'notify', '--name', 'grafana']);
    assert.equal(made.code, 0, made.stderr);
    const chart = path.join(relay.home, 'chart.png');
    await fsp.writeFile(chart, pngBuffer(16, 12, [200, 30, 30]));
    const posted = await cli(relay.home, [
      'notify', '--title', 'Latency chart', '--priority', '4', '--tag', 'web', '--image', chart,
      '--body', 'p99 is **high** <script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">',
    ], { LOOPCHAT_TOKEN: made.stdout.trim(), LOOPCHAT_URL: relay.origin });
    assert.equal(posted.code, 0, posted.stderr);
    const files = () => fs.readdirSync(path.join(relay.home, 'alert-images'));
    assert.equal(files().length, 1);

    await page.evaluate(() => { window.__pwned = 0; });
    await openBell();
    await row('Latency chart').locator('.alert-more').click();
    await page.waitForSelector('#alert-detail[open]');
    assert.equal(await page.textContent('#alert-detail-title'), 'Latency chart');
    assert.equal(await page.locator('#alert-detail-body strong').textContent(), 'high');
    assert.equal(await page.locator('#alert-detail-body script, #alert-detail-body img').count(), 0);
    const meta = await page.textContent('#alert-detail-meta');
    assert.match(meta, /priority 4/);
    assert.match(meta, /tags: web/);
    assert.match(meta, /from token:/);
    await page.waitForFunction(() => {
      const img = document.getElementById('alert-detail-image');
      return !img.hidden && img.complete && img.naturalWidth === 16 && img.naturalHeight === 12;
    });
    assert.equal(await page.evaluate(() => window.__pwned), 0);

    await page.click('#alert-dismiss');
    await page.waitForSelector('#alert-detail', { state: 'hidden' });
    await openBell();
    await waitFor(async () => (await row('Latency chart').count()) === 0, { what: 'the dismissed alert gone from the list' });
    await waitFor(() => files().length === 0, { what: 'the image file gone' });
  });

  it('read state lives in the relay: a second window follows without a reload', async () => {
    await relay.notify({ title: 'Shared read state', body: 'x', priority: 3 });
    const other = await newPage(browser);
    try {
      await openChat(other, relay);
      await other.waitForFunction(() => !document.getElementById('bell-count').hidden);
      await page.waitForFunction(() => !document.getElementById('bell-count').hidden);
      await openBell();
      await page.click('#mark-read');
      await other.waitForSelector('#bell-count', { state: 'hidden' });
      const { notifications } = (await relay.api('GET', 'notifications?limit=500')).json;
      assert.ok(notifications.every((n) => n.read === true), JSON.stringify(notifications));
    } finally {
      await other.context().close();
    }
  });

  it('the Checks panel runs a check; its alert shows the run and Run again resolves it in place', async () => {
    await openBell();
    await page.click('#show-checks');
    const item = page.locator('#checks-list .check-item[data-check="flaky"]');
    await item.waitFor();
    assert.match(await item.textContent(), /pending/);
    await item.locator('.check-run').click();
    await page.waitForSelector('#checks-list .check-item.check-failing[data-check="flaky"]');
    // The sidebar's status line counts it (refreshed every few seconds).
    await page.waitForFunction(() => /· 1 failing check$/.test(document.getElementById('live-status').textContent), null, { timeout: 15000 });
    await row('flaky failing').waitFor();
    await row('flaky failing').locator('.alert-more').click();
    await page.waitForSelector('#alert-detail[open]');
    assert.match(await page.textContent('#alert-detail-check'), /exit 3/);
    assert.match(await page.textContent('#alert-detail-check'), /disk sda1 is 97% full/);
    assert.match(await page.textContent('#alert-detail-meta'), /from check:flaky/);
    const before = (await relay.api('GET', 'notifications/check:flaky')).json.notification;

    await fsp.writeFile(flag, '');
    await page.click('#alert-run-again');
    await page.waitForFunction(() => /resolved/.test(document.getElementById('alert-detail-title').textContent));
    const after = (await relay.api('GET', 'notifications/check:flaky')).json.notification;
    assert.equal(after.id, before.id);
    assert.ok(after.seq > before.seq);
    assert.equal(after.check.state, 'resolved');
    await page.click('#alert-detail-close');
    await openBell();
    assert.equal(await page.locator('#alerts-list .alert-item >> text=flaky').count(), 1, 'one alert for the check');
  });

  it('"Ask the agent" starts a turn carrying the alert and the alert links to it', async () => {
    await openBell();
    await row('flaky resolved').locator('.alert-more').click();
    await page.waitForSelector('#alert-detail[open]');
    await page.click('#alert-ask');
    await page.waitForFunction(() => (new URL(location.href).searchParams.get('session') || '').startsWith('alert-'));
    const session = await page.evaluate(() => new URL(location.href).searchParams.get('session'));
    await page.waitForSelector('#messages .msg.user .msg-body >> text=/all good/');
    const first = await page.locator('#messages .msg.user .msg-body').first().innerText();
    assert.match(first, /flaky resolved/);
    assert.match(first, /Check: flaky/);
    await openBell();
    await row('flaky resolved').locator('.alert-more').click();
    await page.waitForSelector(`#alert-detail-links >> text=${session}`);
    assert.match(await page.textContent('#alert-detail-links'), /investigated in session/);
  });
});
