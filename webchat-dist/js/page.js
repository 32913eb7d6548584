// @ts-check
// The page's fixed elements (index.html), the banner and the screen
// readers' announcer: what every part of the chat writes to.

/** The element with this id (index.html has every one the modules ask for). */
export function $(id) {
  return /** @type {HTMLElement} */ (document.getElementById(id));
}

export const ui = {
  app: $('app'),
  sidebar: $('sidebar'),
  scrim: $('sidebar-scrim'),
  sidebarToggle: $('sidebar-toggle'),
  title: $('session-title'),
  agentInfo: $('agent-info'),
  liveStatus: $('live-status'),
  thinking: /** @type {HTMLSelectElement} */ ($('thinking')),
  model: /** @type {HTMLSelectElement} */ ($('model')),
  modelPicker: $('model-picker'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  bannerAction: $('banner-action'),
  authScreen: $('auth-screen'),
  authTitle: $('auth-title'),
  authText: $('auth-text'),
  authRetry: $('auth-retry'),
  scroller: $('scroller'),
  messages: $('messages'),
  live: $('live'),
  pending: $('pending'),
  empty: $('empty'),
  olderStatus: $('older-status'),
  jump: $('jump-latest'),
  announcer: $('announcer'),
  stop: /** @type {HTMLButtonElement} */ ($('stop')),
  input: /** @type {HTMLTextAreaElement} */ ($('input')),
  newChat: $('new-chat'),
};

/** Say `text` to screen readers (the live region). */
export function announce(text) {
  ui.announcer.textContent = '';
  // a separate task so screen readers notice the change
  setTimeout(() => { ui.announcer.textContent = text; }, 50);
}

// ---------------------------------------------------------------- banner

let bannerTimer = 0;

/**
 * @param {string} text
 * @param {{kind?: string, action?: (() => void) | null, actionLabel?: string}} [o]
 */
export function showBanner(text, { kind = 'warn', action = null, actionLabel = '' } = {}) {
  ui.banner.hidden = false;
  ui.banner.className = `banner ${kind}`;
  ui.bannerText.textContent = text;
  ui.bannerAction.hidden = !action;
  ui.bannerAction.textContent = actionLabel;
  ui.bannerAction.onclick = action;
}

export function hideBanner() {
  clearInterval(bannerTimer);
  bannerTimer = 0;
  ui.banner.hidden = true;
  ui.banner.className = 'banner';
}

/** An error the user can only dismiss. */
export function showError(text) {
  showBanner(text, { kind: 'error', action: hideBanner, actionLabel: 'Dismiss' });
}

/**
 * The relay is out of reach: a countdown to the next attempt, and a button
 * that tries at once.
 * @param {number} retryAt  when the next attempt is made (ms since the epoch)
 * @param {string} what
 * @param {() => void} reconnectNow
 */
export function showOfflineBanner(retryAt, what, reconnectNow) {
  clearInterval(bannerTimer);
  const tick = () => {
    const secs = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    showBanner(secs > 0 ? `${what} — reconnecting in ${secs} s…` : `${what} — reconnecting…`, {
      kind: 'warn',
      action: () => reconnectNow(),
      actionLabel: 'Reconnect now',
    });
    ui.banner.dataset.state = 'offline';
  };
  tick();
  bannerTimer = setInterval(tick, 1000);
}
