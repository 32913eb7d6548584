// Small things people notice: a copy button for a whole message, drafts kept
// per session across reloads, the shortcut sheet on `?`, and the theme
// picker (system, light, dark).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { suiteFixture, newPage, openChat, sendMessage, waitFor } from './harness.mjs';

describe('niceties', () => {
  const fx = suiteFixture();

  it('copies a whole message, markup and all, as its text', async () => {
    const page = await newPage(fx.browser);
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: fx.relay.origin });
    await openChat(page, fx.relay, { session: 'copy' });
    await sendMessage(page, 'first line **bold**\n\nsecond line');
    const reply = page.locator('#messages .msg.assistant').last();
    await reply.waitFor({ timeout: 20000 });
    await reply.locator('.copy-msg-btn').click();
    await waitFor(async () => (await reply.locator('.copy-msg-btn').textContent()) === 'Copied', { what: 'copied' });
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'echo: first line **bold**\n\nsecond line');
    // The user's own message has one too.
    const mine = page.locator('#messages .msg.user').last();
    await mine.locator('.copy-msg-btn').click();
    await waitFor(async () => (await page.evaluate(() => navigator.clipboard.readText())) === 'first line **bold**\n\nsecond line', { what: 'user text copied' });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('keeps an unsent draft per session across a reload and a switch', async () => {
    const page = await newPage(fx.browser);
    await openChat(page, fx.relay, { session: 'draft-a' });
    await page.fill('#input', 'half a thought');
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    assert.equal(await page.inputValue('#input'), 'half a thought');
    // Another session has its own (empty) draft, and coming back restores this one.
    await openChat(page, fx.relay, { session: 'draft-b' });
    assert.equal(await page.inputValue('#input'), '');
    await page.fill('#input', 'other words');
    await openChat(page, fx.relay, { session: 'draft-a' });
    assert.equal(await page.inputValue('#input'), 'half a thought');
    // Sending clears it for good.
    await page.press('#input', 'Enter');
    await page.locator('#messages .msg.assistant').last().waitFor({ timeout: 20000 });
    await page.reload();
    await page.waitForSelector('#app[data-state="ready"]');
    assert.equal(await page.inputValue('#input'), '');
    await page.context().close();
  });

  it('shows the keyboard shortcuts on ?, and Esc closes them', async () => {
    const page = await newPage(fx.browser);
    await openChat(page, fx.relay, { session: 'keys' });
    await page.evaluate(() => document.activeElement?.blur());
    await page.keyboard.press('?');
    const sheet = page.locator('dialog#shortcuts');
    await sheet.waitFor({ state: 'visible' });
    const keys = await sheet.locator('kbd').allTextContents();
    assert.ok(keys.includes('Ctrl+Shift+O') && keys.includes('?'), keys.join(', '));
    await page.keyboard.press('Escape');
    await sheet.waitFor({ state: 'hidden' });
    // Typed in the message box, `?` is just a character.
    await page.fill('#input', '');
    await page.type('#input', 'why?');
    assert.equal(await page.inputValue('#input'), 'why?');
    assert.equal(await sheet.isVisible(), false);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('picks light, dark or the system theme, before the first paint and across reloads', async () => {
    const page = await newPage(fx.browser, { colorScheme: 'light' });
    await openChat(page, fx.relay, { session: 'theme' });
    const look = () => page.evaluate(() => ({
      theme: document.documentElement.dataset.theme,
      bg: getComputedStyle(document.body).backgroundColor,
      pick: document.getElementById('theme').value,
    }));
    assert.deepEqual(await look(), { theme: 'light', bg: 'rgb(255, 255, 255)', pick: 'system' });
    await page.selectOption('#theme', 'dark');
    assert.deepEqual(await look(), { theme: 'dark', bg: 'rgb(21, 23, 28)', pick: 'dark' });
    // Set by boot.js before the modules run: the first paint is already dark.
    await page.reload({ waitUntil: 'commit' });
    await page.waitForFunction(() => document.documentElement.dataset.theme !== undefined);
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
    await page.waitForSelector('#app[data-state="ready"]');
    assert.deepEqual(await look(), { theme: 'dark', bg: 'rgb(21, 23, 28)', pick: 'dark' });
    // A dark system with "light" chosen stays light; "system" then follows it.
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.selectOption('#theme', 'light');
    assert.equal((await look()).theme, 'light');
    await page.selectOption('#theme', 'system');
    assert.equal((await look()).theme, 'dark');
    // The system's change arrives as a media-query event: waited for.
    await page.emulateMedia({ colorScheme: 'light' });
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'light', null, { timeout: 5000 });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
