// Issue 17 item 7, the focus-visible pass: walking the page with Tab, every
// control that takes the focus shows a ring (its own outline, or for the
// message box the composer's) in the --focus colour, in the light and the
// dark theme, and the ring stands out from the background behind it.

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

const contrast = (a, b) => {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
};

/** The focused element, and the ring it shows (its own outline or its ringed container's). */
const focusRing = (page) => page.evaluate(() => {
  const a = document.activeElement;
  const ringed = a.id === 'input' ? a.closest('.composer-row') : a;
  const s = getComputedStyle(ringed);
  let bg = 'rgb(255, 255, 255)';
  for (let n = ringed.parentElement; n; n = n.parentElement) {
    const c = getComputedStyle(n).backgroundColor;
    if (c && c !== 'transparent' && !/rgba\(.*, 0\)$/.test(c)) { bg = c; break; }
  }
  return {
    what: a.id || a.className || a.tagName,
    style: s.outlineStyle,
    width: parseFloat(s.outlineWidth),
    color: s.outlineColor,
    bg,
    visible: a.matches(':focus-visible'),
  };
});

describe('focus-visible pass', () => {
  let relay;
  let browser;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start();
    await relay.send('a reply to copy', 'main');
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  for (const scheme of ['light', 'dark']) {
    it(`every control reached by Tab shows its ring (${scheme})`, async () => {
      const page = await newPage(browser, { colorScheme: scheme });
      await openChat(page, relay, { session: 'main' });
      await page.waitForSelector('#messages .msg.assistant');
      assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), scheme);
      const focusColor = await page.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue('--focus').trim());
      await page.click('#session-title');
      const seen = new Map();
      for (let i = 0; i < 40; i++) {
        await page.keyboard.press('Tab');
        const ring = await focusRing(page);
        if (ring.what === 'BODY') continue;
        seen.set(ring.what, ring);
        assert.ok(ring.visible, `${ring.what} matches :focus-visible after Tab`);
        assert.notEqual(ring.style, 'none', `${ring.what} has no focus ring (${scheme})`);
        assert.ok(ring.width >= 2, `${ring.what}: a ${ring.width}px ring`);
        assert.ok(contrast(ring.color, ring.bg) >= 3, `${ring.what}: ring ${ring.color} on ${ring.bg} (${scheme})`);
      }
      // The walk went through the chat's main controls.
      for (const id of ['new-chat', 'thinking', 'attach', 'input', 'send']) {
        assert.ok(seen.has(id), `Tab never reached #${id}: ${[...seen.keys()].join(', ')}`);
      }
      assert.equal(seen.get('send').color.replace(/\s/g, ''), await page.evaluate((c) => {
        const probe = document.createElement('div');
        probe.style.color = c;
        document.body.append(probe);
        const v = getComputedStyle(probe).color;
        probe.remove();
        return v.replace(/\s/g, '');
      }, focusColor), 'the ring is the theme\'s --focus colour');
      await page.focus('#send');
      await page.keyboard.press('Shift+Tab');
      await screenshot(page, `focus-${scheme}`);
      await page.context().close();
    });
  }
});
