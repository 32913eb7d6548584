// Look and feel: light and dark following the system, a phone-width window
// (sidebar behind a toggle), keyboard shortcuts, visible focus, accessible
// names. Saves screenshots to tests/artifacts/ (light, dark, narrow).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, launchBrowser, newPage, openChat, missingPrerequisite, screenshot } from './harness.mjs';

function luminance(rgb) {
  const [r, g, b] = rgb.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map((v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

const SAMPLE = 'Here is a short answer with **bold**, `code`, and a list:\n\n- one\n- two\n\n```python\nprint("hello")\n```\n\n| key | value |\n|---|---|\n| a | 1 |';

describe('appearance', () => {
  let relay;
  let browser;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start();
    await relay.send(SAMPLE, 'main');
    await relay.send('a second session', 'notes');
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  it('light by default: light background, dark text', async () => {
    const page = await newPage(browser, { colorScheme: 'light' });
    await openChat(page, relay, { session: 'main' });
    await page.waitForSelector('#messages .msg.assistant table');
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const fg = await page.evaluate(() => getComputedStyle(document.body).color);
    assert.ok(luminance(bg) > 0.8, `light background ${bg}`);
    assert.ok(luminance(fg) < 0.1, `dark text ${fg}`);
    await screenshot(page, 'webchat-light');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('dark when the system prefers dark', async () => {
    const page = await newPage(browser, { colorScheme: 'dark' });
    await openChat(page, relay, { session: 'main' });
    await page.waitForSelector('#messages .msg.assistant table');
    const colours = await page.evaluate(() => ({
      body: getComputedStyle(document.body).backgroundColor,
      text: getComputedStyle(document.body).color,
      sidebar: getComputedStyle(document.getElementById('sidebar')).backgroundColor,
      code: getComputedStyle(document.querySelector('.markdown pre')).backgroundColor,
      input: getComputedStyle(document.querySelector('.composer-row')).backgroundColor,
    }));
    assert.ok(luminance(colours.body) < 0.05, `dark background ${colours.body}`);
    assert.ok(luminance(colours.text) > 0.6, `light text ${colours.text}`);
    for (const k of ['sidebar', 'code', 'input']) assert.ok(luminance(colours[k]) < 0.1, `${k} is dark too: ${colours[k]}`);
    // switching the system theme live follows it: the media query's change
    // event arrives with the page's next rendering step, not with emulateMedia
    const themeBecomes = (t) => page.waitForFunction((want) => document.documentElement.dataset.theme === want, t, { timeout: 5000 });
    await page.emulateMedia({ colorScheme: 'light' });
    await themeBecomes('light');
    assert.ok(luminance(await page.evaluate(() => getComputedStyle(document.body).backgroundColor)) > 0.8);
    await page.emulateMedia({ colorScheme: 'dark' });
    await themeBecomes('dark');
    assert.ok(luminance(await page.evaluate(() => getComputedStyle(document.body).backgroundColor)) < 0.05);
    await screenshot(page, 'webchat-dark');
    await page.context().close();
  });

  it('a phone-width window hides the sidebar behind a toggle, with no sideways scrolling', async () => {
    const page = await newPage(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await openChat(page, relay, { session: 'main' });
    await page.waitForSelector('#messages .msg.assistant table');
    const sidebarBox = await page.locator('#sidebar').boundingBox();
    assert.ok(!sidebarBox || sidebarBox.x + sidebarBox.width <= 0, `sidebar off screen: ${JSON.stringify(sidebarBox)}`);
    assert.equal(await page.isVisible('#sidebar-toggle'), true);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal overflow (${overflow}px)`);
    const composer = await page.locator('#composer').boundingBox();
    assert.ok(composer.x >= 0 && composer.x + composer.width <= 390 && composer.y + composer.height <= 844, 'composer fully on screen');
    const send = await page.locator('#send').boundingBox();
    assert.ok(send.x + send.width <= 390, 'send button on screen');
    await screenshot(page, 'webchat-narrow');
    await page.click('#sidebar-toggle');
    await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().left >= 0);
    assert.equal(await page.getAttribute('#sidebar-toggle', 'aria-expanded'), 'true');
    await screenshot(page, 'webchat-narrow-sidebar');
    await page.click('#session-list .session-item[data-key="notes"]');
    await page.waitForSelector('#messages .msg >> text=echo: a second session');
    await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().right <= 0);
    assert.equal(await page.getAttribute('#sidebar-toggle', 'aria-expanded'), 'false');
    await page.context().close();
  });

  it('keyboard: "/" and Shift+Esc focus the input; focus is visible; controls have names', async () => {
    const page = await newPage(browser);
    await openChat(page, relay, { session: 'main' });
    await page.click('#session-title');
    assert.notEqual(await page.evaluate(() => document.activeElement.id), 'input');
    await page.keyboard.press('/');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'input');
    assert.equal(await page.inputValue('#input'), '', '"/" is not typed into the input');
    await page.click('#session-title');
    await page.keyboard.press('Shift+Escape');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'input');
    // Tab to a button: its focus ring is visible
    await page.focus('#new-chat');
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Tab');
    const outline = await page.evaluate(() => {
      const s = getComputedStyle(document.activeElement);
      return { id: document.activeElement.id, style: s.outlineStyle, width: parseFloat(s.outlineWidth) };
    });
    assert.equal(outline.id, 'new-chat');
    assert.notEqual(outline.style, 'none');
    assert.ok(outline.width >= 1);
    const unnamed = await page.$$eval('button, select, textarea', (els) => els
      .filter((e) => e.offsetParent !== null)
      .filter((e) => !(e.getAttribute('aria-label') || e.textContent.trim() || e.closest('label')))
      .map((e) => e.outerHTML.slice(0, 80)));
    assert.deepEqual(unnamed, []);
    assert.equal(await page.getAttribute('.transcript', 'role'), 'log');
    await page.context().close();
  });
});
