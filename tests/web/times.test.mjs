// Message times on the first paint. A new tab does not create an
// Intl.DateTimeFormat before its messages are painted (35–45 ms of ICU set-up
// in a new renderer): it writes times from the shape of the locale's formats
// that an earlier page stored (js/time.js). These tests hold that text to be
// Intl's own in several locales, that a shape is kept only where it can be
// exact, and that a wrong shape is used once and then mended.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { newPage, openChat, suiteFixture } from './harness.mjs';

const SHAPE_KEY = 'loopchat.timeShape';

// Times across the day and the year: midnight, noon, one in the afternoon,
// late evening, in months whose short names differ between locales.
const WHEN = ['2025-01-03T00:05:00', '2025-03-14T12:00:00', '2025-05-20T13:07:00', '2025-09-30T23:59:00', '2025-12-01T09:30:00'];

/** Records, when the first messages are put in the page, their time texts and whether a tooltip was set. */
function recordFirstTimes() {
  window.__firstTimes = undefined;
  const mo = new MutationObserver(() => {
    const times = [...document.querySelectorAll('#messages time.msg-time')];
    if (times.length === 0 || window.__firstTimes) return;
    window.__firstTimes = times.map((t) => ({ iso: t.getAttribute('datetime'), text: t.textContent, title: t.getAttribute('title') }));
    mo.disconnect();
  });
  // from the document's start: the app may render before DOMContentLoaded
  mo.observe(document, { childList: true, subtree: true });
}

/** What Intl writes for a message time (the page's own rule: clock time today, date and time otherwise). */
function intlTexts(isos) {
  const time = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateTime = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  const today = new Date().toDateString();
  return isos.map((iso) => {
    const d = new Date(iso);
    return d.toDateString() === today ? time.format(d) : dateTime.format(d);
  });
}

describe('message times', () => {
  const stamps = [...WHEN.map((w) => new Date(w).toISOString()), new Date().toISOString()];
  const fx = suiteFixture({
    store: { times: stamps.map((timestamp, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `at ${i}`, timestamp })) },
  });

  // ar-EG writes Arabic-Indic digits, which a shape cannot: it keeps none.
  for (const [locale, timezoneId, shaped] of [['en-US', 'America/New_York', true], ['de-DE', 'Europe/Berlin', true], ['ja-JP', 'Asia/Tokyo', true], ['en-GB', 'Europe/London', true], ['ar-EG', 'Africa/Cairo', false]]) {
    it(`${locale}: a new tab writes the times Intl would, before its formatters exist`, async () => {
      const page = await newPage(fx.browser, { locale, timezoneId });
      const context = page.context();
      await openChat(page, fx.relay, { session: 'times' });
      await page.waitForSelector('#messages .msg >> text=at 5');
      await page.waitForFunction((key) => localStorage.getItem(key) !== null || document.querySelector('time.msg-time[title]'), SHAPE_KEY);
      // the formatters were made after the paint: every time has its tooltip
      await page.waitForFunction(() => [...document.querySelectorAll('time.msg-time')].every((t) => t.title));
      const shape = await page.evaluate((key) => localStorage.getItem(key), SHAPE_KEY);
      assert.equal(shape !== null, shaped, `${locale}: shape ${shape}`);

      const tab = await context.newPage();
      await tab.addInitScript(recordFirstTimes);
      await tab.goto(`${fx.relay.origin}/webchat/?session=times`);
      await tab.waitForFunction(() => window.__firstTimes !== undefined);
      const first = await tab.evaluate(() => window.__firstTimes);
      const expected = await tab.evaluate(intlTexts, first.map((t) => t.iso));
      assert.deepEqual(first.map((t) => t.text), expected, `${locale}: first-paint times`);
      // with a shape, the first paint made no formatter (no tooltip yet); without one it had to
      assert.equal(first.every((t) => t.title === null), shaped, `${locale}: tooltips at first paint ${JSON.stringify(first)}`);
      await tab.waitForFunction(() => [...document.querySelectorAll('time.msg-time')].every((t) => t.title));
      assert.deepEqual(page.problems, []);
      await context.close();
    });
  }

  it('a wrong shape is used once and mended; one of other languages is not used', async () => {
    const page = await newPage(fx.browser, { locale: 'en-US', timezoneId: 'UTC' });
    const context = page.context();
    await openChat(page, fx.relay, { session: 'times' });
    await page.waitForFunction((key) => localStorage.getItem(key) !== null, SHAPE_KEY);
    const good = JSON.parse(await page.evaluate((key) => localStorage.getItem(key), SHAPE_KEY));

    // Wrong month names, for these very languages (say a browser update changed the locale's data).
    const wrong = { ...good, months: good.months.map(() => 'Mon') };
    await page.evaluate(([key, v]) => localStorage.setItem(key, v), [SHAPE_KEY, JSON.stringify(wrong)]);
    const tab = await context.newPage();
    await tab.addInitScript(recordFirstTimes);
    await tab.goto(`${fx.relay.origin}/webchat/?session=times`);
    await tab.waitForFunction(() => window.__firstTimes !== undefined);
    const first = await tab.evaluate(() => window.__firstTimes);
    assert.ok(first[0].text.startsWith('Mon '), `the stored shape wrote the first paint: ${first[0].text}`);
    const expected = await tab.evaluate(intlTexts, first.map((t) => t.iso));
    await tab.waitForFunction((want) => JSON.stringify([...document.querySelectorAll('time.msg-time')].map((t) => t.textContent)) === JSON.stringify(want), expected);
    assert.deepEqual(JSON.parse(await tab.evaluate((key) => localStorage.getItem(key), SHAPE_KEY)), good, 'the shape was stored again');
    await tab.close();

    // The same shape stored for other languages is not used.
    await page.evaluate(([key, v]) => localStorage.setItem(key, v), [SHAPE_KEY, JSON.stringify({ ...wrong, locale: 'fr-FR,fr' })]);
    const other = await context.newPage();
    await other.addInitScript(recordFirstTimes);
    await other.goto(`${fx.relay.origin}/webchat/?session=times`);
    await other.waitForFunction(() => window.__firstTimes !== undefined);
    const firstOther = await other.evaluate(() => window.__firstTimes);
    assert.deepEqual(firstOther.map((t) => t.text), await other.evaluate(intlTexts, firstOther.map((t) => t.iso)));
    assert.deepEqual(page.problems, []);
    await context.close();
  });
});
