// @ts-check
// The installable app: the service worker, the install prompt and the
// unread badge on the app's icon.

import { store } from './util.js';

const VISITS_KEY = 'loopchat.install.visits';
const DISMISSED_KEY = 'loopchat.install.dismissed';
const VISITED_TAB_KEY = 'loopchat.install.visited';

/** Register sw.js (scope /webchat/): it keeps the shell for offline loads. */
export function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register('sw.js', { scope: './' }).catch((err) => {
    // without it the page still works online; only offline reloads fail
    console.warn('service worker not registered:', err && err.name);
  });
}

/** Already running as the installed app (its own window). */
export function runningStandalone() {
  return window.matchMedia('(display-mode: standalone)').matches
    || window.matchMedia('(display-mode: window-controls-overlay)').matches
    // iOS Safari's own flag
    || /** @type {Navigator & {standalone?: boolean}} */ (navigator).standalone === true;
}

/**
 * Count this visit and return the count. A visit is one tab's session:
 * reloading a tab (or coming back to it) is the same visit, so the prompt is
 * not shown just because the first visit reloaded.
 */
function countVisit() {
  let counted = false;
  try {
    counted = sessionStorage.getItem(VISITED_TAB_KEY) === '1';
    sessionStorage.setItem(VISITED_TAB_KEY, '1');
  } catch {
    // no sessionStorage: every load is a visit
  }
  const before = Number(store.get(VISITS_KEY, 0)) || 0;
  if (counted) return Math.max(1, before);
  store.set(VISITS_KEY, before + 1);
  return before + 1;
}

/**
 * The install prompt: from the second visit on, never on the first; never
 * when already installed; gone for good once dismissed. Where the browser
 * offers `beforeinstallprompt` the prompt's button installs; elsewhere it
 * says how to install by hand.
 */
export function setUpInstallPrompt({ root, text, accept, dismiss }) {
  let deferred = null;
  const visits = countVisit();
  const wanted = () => visits >= 2 && !store.get(DISMISSED_KEY, false) && !runningStandalone();

  const manualText = () => {
    const ua = navigator.userAgent;
    if (/iPhone|iPad|iPod/.test(ua)) return 'Install loopchat: tap Share, then “Add to Home Screen”.';
    if (/Firefox/.test(ua)) return 'Install loopchat: choose “Add to Home Screen” (Android) or pin this tab; desktop Firefox has no app install.';
    if (/Safari/.test(ua) && !/Chrome|Chromium/.test(ua)) return 'Install loopchat: choose File → “Add to Dock” (or Share → “Add to Home Screen”).';
    return 'Install loopchat: open the browser menu and choose “Install loopchat…” (or “Add to Home Screen”).';
  };

  const render = () => {
    if (!wanted()) {
      root.hidden = true;
      return;
    }
    root.hidden = false;
    if (deferred) {
      text.textContent = 'Install loopchat as an app: its own window, and unread alerts on its icon.';
      accept.hidden = false;
    } else {
      text.textContent = manualText();
      accept.hidden = true;
    }
    root.dataset.mode = deferred ? 'prompt' : 'manual';
  };

  window.addEventListener('beforeinstallprompt', (e) => {
    // shown by our own prompt, at the time we choose
    e.preventDefault();
    deferred = e;
    render();
  });
  window.addEventListener('appinstalled', () => {
    deferred = null;
    store.set(DISMISSED_KEY, true);
    render();
  });
  accept.addEventListener('click', async () => {
    const e = deferred;
    if (!e) return;
    deferred = null;
    try {
      await e.prompt();
      const choice = await e.userChoice;
      if (choice && choice.outcome === 'accepted') store.set(DISMISSED_KEY, true);
    } catch {
      // the browser refused to show it; the instructions remain
    }
    render();
  });
  dismiss.addEventListener('click', () => {
    store.set(DISMISSED_KEY, true);
    render();
  });
  window.matchMedia('(display-mode: standalone)').addEventListener?.('change', render);
  render();
}

/** The unread count on the installed app's icon (Badging API, where there is one). */
export function setBadge(count) {
  try {
    if (count > 0 && typeof navigator.setAppBadge === 'function') {
      navigator.setAppBadge(count).catch(() => {});
    } else if (count === 0 && typeof navigator.clearAppBadge === 'function') {
      navigator.clearAppBadge().catch(() => {});
    }
  } catch {
    // not supported here
  }
}
