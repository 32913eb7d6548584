// Code and math rendered by the relay: fenced code arrives highlighted
// (spans with hl- classes, coloured by css/highlight.css in light and dark),
// formulas arrive as MathML that Chromium lays out natively. Screenshots in
// tests/artifacts/ (markdown-light.png, markdown-dark.png).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { suiteFixture, newPage, openChat, sendMessage, screenshot } from './harness.mjs';

const REPLY = [
  'Here:',
  '',
  '```rust',
  'fn main() {',
  '    // a comment',
  '    let answer: u32 = 42;',
  '    println!("{answer}");',
  '}',
  '```',
  '',
  'Inline $x^2 + y^2 = z^2$ and a block:',
  '',
  '$$\\frac{a+b}{2} \\ge \\sqrt{ab}$$',
].join('\n');

describe('code and math', () => {
  const fx = suiteFixture();

  for (const scheme of ['light', 'dark']) {
    it(`highlights code and renders formulas (${scheme})`, async () => {
      const page = await newPage(fx.browser, { colorScheme: scheme });
      await openChat(page, fx.relay, { session: `md-${scheme}` });
      await sendMessage(page, REPLY);
      const reply = page.locator('#messages .msg.assistant').last();
      await reply.locator('pre code span[class^="hl-"]').first().waitFor({ timeout: 20000 });

      // Keywords, comments and numbers are coloured apart from plain text,
      // by the stylesheet for this colour scheme.
      const colours = await reply.evaluate((el) => {
        const code = el.querySelector('pre code');
        const colourOf = (text) => {
          const span = [...code.querySelectorAll('span')].find((s) => s.textContent.trim() === text);
          return span ? getComputedStyle(span).color : null;
        };
        const distinct = new Set([...code.querySelectorAll('span')].map((s) => getComputedStyle(s).color));
        return { plain: getComputedStyle(code).color, comment: colourOf('// a comment'), number: colourOf('42'), distinct: distinct.size };
      });
      for (const kind of ['comment', 'number']) {
        assert.ok(colours[kind], `a span for the ${kind}: ${JSON.stringify(colours)}`);
        assert.notEqual(colours[kind], colours.plain, `${kind} coloured: ${JSON.stringify(colours)}`);
      }
      assert.notEqual(colours.number, colours.comment);
      assert.ok(colours.distinct >= 4, `several colours: ${JSON.stringify(colours)}`);
      // The copy button copies the code, not the markup.
      assert.match(await reply.locator('pre code').innerText(), /let answer: u32 = 42;/);

      // MathML, laid out: the fraction's numerator sits above its
      // denominator, the inline formula inside its line.
      const math = await reply.evaluate((el) => {
        const frac = el.querySelector('math[display="block"] mfrac');
        const inline = el.querySelector('math[display="inline"]');
        if (!frac || !inline) return null;
        const [num, den] = [...frac.children].map((c) => c.getBoundingClientRect());
        return { numBottom: num.bottom, denTop: den.top, inlineWidth: inline.getBoundingClientRect().width, sup: !!inline.querySelector('msup') };
      });
      assert.ok(math, 'a block and an inline formula');
      assert.ok(math.numBottom <= math.denTop + 1, `numerator above denominator: ${JSON.stringify(math)}`);
      assert.ok(math.inlineWidth > 20 && math.sup, JSON.stringify(math));

      await reply.scrollIntoViewIfNeeded();
      await screenshot(page, `markdown-${scheme}`);
      assert.deepEqual(page.problems, []);
      await page.context().close();
    });
  }
});
