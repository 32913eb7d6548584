#!/usr/bin/env node
// Opening a 5,000-message (≈11 MB) session: time from navigation to the
// latest messages painted (goal ≤ 300 ms), message nodes in the DOM (≤ 300)
// and JS heap size. Runs against the real relay (see harness.mjs).
//
//   node bench-open.mjs [--runs N] [--json]

import { Relay, launchBrowser, newPage, missingPrerequisite, paintedViaCdp, tempHome, writeStore } from './harness.mjs';
import { bigMessage, BIG } from './history-data.mjs';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1]) || 5;
const asJson = args.includes('--json');
// --page FILE: time another entry page under /webchat/ (for experiments), default the UI itself
const entry = args.includes('--page') ? args[args.indexOf('--page') + 1] : '';

const missing = missingPrerequisite();
if (missing) {
  console.error(`bench-open: ${missing}`);
  process.exit(2);
}

const home = await tempHome('loopchat-bench-');
await writeStore(home, { big: { count: BIG, make: bigMessage } });
const relay = await Relay.start({ home });
const browser = await launchBrowser();
const results = [];
try {
  // warm the relay (first read of the transcript tail)
  {
    const page = await newPage(browser);
    await page.goto(relay.pageUrl({ session: 'big' }));
    await page.waitForSelector(`#messages .msg >> text=message ${BIG - 1} `);
    await page.context().close();
  }
  // Run 1 navigates the tab that just signed in (its renderer is warm, the
  // assets are in the HTTP cache). The others open the page in a new tab of the
  // same profile, as a returning user does: a fresh renderer compiles the
  // modules again and revalidates each asset (304).
  let context = null;
  for (let i = 0; i < runs; i++) {
    const page = context ? await context.newPage() : await newPage(browser);
    context = page.context();
    // sign in first (the token goes to localStorage) so the timed navigation is the plain page load
    if (i === 0) {
      await page.goto(relay.pageUrl({ session: 'empty-bench' }));
      await page.waitForSelector('#app[data-state="ready"]');
      await page.evaluate(() => {
        const token = localStorage.getItem('loopchat.token');
        localStorage.clear();
        localStorage.setItem('loopchat.token', token);
      });
      await page.goto('about:blank');
    }
    const client = await page.context().newCDPSession(page);
    await client.send('Performance.enable');
    // Record, in the page, when the latest message is painted: its text
    // elements get an `elementtiming` attribute as soon as they are inserted
    // (a MutationObserver runs before the next paint), and the Element Timing
    // API reports their renderTime — the frame that actually showed them.
    await page.addInitScript((last) => {
      window.__painted = undefined;
      window.__paintedPromise = new Promise((resolve) => { window.__paintedResolve = resolve; });
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          if (e.identifier === 'latest' && window.__painted === undefined) window.__paintedResolve(window.__painted = e.renderTime || e.loadTime);
        }
      }).observe({ type: 'element', buffered: true });
      const mo = new MutationObserver(() => {
        const nodes = document.querySelectorAll('#messages .msg');
        const lastNode = nodes[nodes.length - 1];
        if (lastNode && lastNode.textContent.includes(`message ${last} `)) {
          for (const el of lastNode.querySelectorAll('.msg-body *')) el.setAttribute('elementtiming', 'latest');
          mo.disconnect();
        }
      });
      // from the document's start: the app may render before DOMContentLoaded
      mo.observe(document, { childList: true, subtree: true });
    }, BIG - 1);
    await page.goto(`${relay.origin}/webchat/${entry}?session=big`);
    await paintedViaCdp(client);
    const figures = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const info = performance.getEntriesByType('resource').find((r) => r.name.includes('/webchat/info?'));
      return {
        paintedMs: window.__painted, // ms since navigation start
        domContentLoadedMs: nav ? nav.domContentLoadedEventEnd : null,
        infoRequestMs: info ? info.duration : null,
        infoStartMs: info ? info.startTime : null,
        infoEndMs: info ? info.responseEnd : null,
        htmlResponseEndMs: nav ? nav.responseEnd : null,
        appStartMs: performance.getEntriesByName('loopchat:start')[0]?.startTime ?? null,
        infoParsedMs: performance.getEntriesByName('loopchat:info').at(-1)?.startTime ?? null,
        renderedMs: performance.getEntriesByName('loopchat:rendered').at(-1)?.startTime ?? null,
        infoBytes: info ? info.transferSize || info.encodedBodySize : null,
        messageNodes: document.querySelectorAll('.msg').length,
        domNodes: document.getElementsByTagName('*').length,
        heapUsedBytes: performance.memory ? performance.memory.usedJSHeapSize : null,
      };
    });
    const metrics = Object.fromEntries((await client.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    figures.cdpJSHeapUsedBytes = metrics.JSHeapUsedSize;
    figures.cdpNodes = metrics.Nodes;
    figures.cold = i === 0;
    results.push(figures);
    await page.close();
  }
  await context?.close();
} finally {
  await browser.close();
  await relay.cleanup();
}

const median = (xs) => { const s = xs.filter((x) => x != null).sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : null; };
const warm = results.filter((r) => !r.cold);
const summary = {
  messages: BIG,
  runs,
  sameTabPaintedMs: Math.round(results[0].paintedMs),
  paintedMsMedian: Math.round(median(warm.map((r) => r.paintedMs))),
  paintedMsMax: Math.round(Math.max(...warm.map((r) => r.paintedMs))),
  infoRequestMsMedian: Math.round(median(results.map((r) => r.infoRequestMs))),
  messageNodesMax: Math.max(...results.map((r) => r.messageNodes)),
  domNodesMax: Math.max(...results.map((r) => r.domNodes)),
  jsHeapUsedMBMedian: +(median(results.map((r) => r.cdpJSHeapUsedBytes)) / 1048576).toFixed(1),
  goals: { paintedMs: 300, messageNodes: 300 },
  // where the time goes (medians over all runs, ms since navigation start)
  phases: {
    htmlLoaded: Math.round(median(results.map((r) => r.htmlResponseEndMs))),
    modulesLoadedAppStart: Math.round(median(results.map((r) => r.appStartMs))),
    infoAnswered: Math.round(median(results.map((r) => r.infoEndMs))),
    transcriptRendered: Math.round(median(results.map((r) => r.renderedMs))),
    painted: Math.round(median(results.map((r) => r.paintedMs))),
    renderAfterInfoOrStart: Math.round(median(results.map((r) => r.renderedMs - Math.max(r.appStartMs, r.infoEndMs)))),
  },
};
summary.pass = summary.paintedMsMedian <= 300 && summary.messageNodesMax <= 300;
if (asJson) {
  console.log(JSON.stringify({ summary, results }, null, 2));
} else {
  console.log(`bench-open: ${BIG}-message session, ${runs} runs`);
  for (const [i, r] of results.entries()) {
    console.log(`  run ${i + 1}${r.cold ? ' (same tab as the sign-in)' : ''}: latest messages painted at ${r.paintedMs.toFixed(0)} ms (html ${r.htmlResponseEndMs?.toFixed(0)}, app start ${r.appStartMs?.toFixed(0)}, info ${r.infoStartMs?.toFixed(0)}→${r.infoEndMs?.toFixed(0)}, rendered ${r.renderedMs?.toFixed(0)} ms), ${r.messageNodes} message nodes, ${r.domNodes} DOM nodes, JS heap ${(r.cdpJSHeapUsedBytes / 1048576).toFixed(1)} MB`);
  }
  const ph = summary.phases;
  console.log(`  phases (median): html ${ph.htmlLoaded} ms → modules loaded/app start ${ph.modulesLoadedAppStart} ms; /info answered ${ph.infoAnswered} ms → transcript rendered ${ph.transcriptRendered} ms (render itself ${ph.renderAfterInfoOrStart} ms) → painted ${ph.painted} ms`);
  console.log(`  same tab ${summary.sameTabPaintedMs} ms; new tabs: median painted ${summary.paintedMsMedian} ms, max ${summary.paintedMsMax} ms (goal ≤ 300), max message nodes ${summary.messageNodesMax} (goal ≤ 300), median JS heap ${summary.jsHeapUsedMBMedian} MB → ${summary.pass ? 'OK' : 'OVER GOAL'}`);
}
process.exit(summary.pass ? 0 : 1);
