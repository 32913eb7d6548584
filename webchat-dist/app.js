// @ts-check
// loopchat web chat: builds the parts and wires them together.
//
// Data flow: the relay's event stream (/webchat/events) is the single source
// of what the transcript shows (conversation.js, runs.js). Sending goes
// through the outbox (sending.js: persisted, idempotent by client uuid); the
// rpc answer is only used to learn that the message was accepted or refused
// — its events are never rendered, so nothing appears twice.
//
// Here: the session list, the alerts, search, the composer, presence, the
// sidebar and the keyboard, and the start.

import { api, onUnauthorized, token, TOKEN_STORAGE_KEY, exportSession } from './js/api.js';
import { Transcript } from './js/transcript.js';
import { messageElement } from './js/render.js';
import { setApprover, watchTranscript } from './js/tools.js';
import { Alerts } from './js/alerts.js';
import { SessionList } from './js/sessions.js';
import { Composer } from './js/composer.js';
import { registerServiceWorker, setUpInstallPrompt, setBadge } from './js/pwa.js';
import { SearchDialog } from './js/search.js';
import { uuid, newSessionKey, SESSION_KEY_RE, store, el } from './js/util.js';
import { $, ui, hideBanner } from './js/page.js';
import { state, PAGE, DEFAULT_SESSION } from './js/state.js';
import { Runs } from './js/runs.js';
import { Sender } from './js/sending.js';
import { Branches } from './js/branches.js';
import { Conversation, sessionFromUrl, draftKey } from './js/conversation.js';

/** Per-tab identity for presence (survives reloads of this tab only). */
const clientId = (() => {
  try {
    let id = sessionStorage.getItem('loopchat.client');
    if (!id) {
      id = uuid();
      sessionStorage.setItem('loopchat.client', id);
    }
    return id;
  } catch {
    return uuid();
  }
})();

// ---------------------------------------------------------------- transcript

const transcript = new Transcript({
  scroller: ui.scroller,
  list: ui.messages,
  root: ui.messages.parentElement,
  render: (msg, extra) => messageElement(msg, {
    ...extra,
    onRetry: msg.stopReason === 'error' || extra.error ? () => runs.retry(msg.id, extra.runId, extra.userText) : undefined,
    onEdit: msg.role === 'user' && msg.parentId ? () => sender.branch({ editOf: msg }) : undefined,
    onRegenerate: msg.role === 'assistant' && msg.parentId && !msg.kind ? () => sender.branch({ regenerate: msg.parentId }) : undefined,
  }),
  fetchOlder: (beforeId) => api.history(state.session, beforeId, PAGE),
  fetchNewer: (afterId) => api.historyAfter(state.session, afterId, PAGE, state.viewLeaf || undefined),
  onLatest: () => { state.viewLeaf = null; conversation.load(); },
  onChange: (s) => {
    // "Start a conversation" only once the session is known to be empty, not
    // while a page opened offline (from the worker's shell) has loaded nothing
    const loaded = ui.app.dataset.state !== 'offline' && ui.app.dataset.state !== 'loading';
    ui.empty.hidden = !(loaded && s.empty && runs.liveCount === 0 && ui.pending.childElementCount === 0);
    if (s.loadingOlder) {
      ui.olderStatus.hidden = false;
      ui.olderStatus.textContent = 'Loading older messages…';
    } else if (s.olderError) {
      ui.olderStatus.hidden = false;
      ui.olderStatus.replaceChildren(
        `Could not load older messages: ${s.olderError.message} `,
        el('button', { class: 'btn btn-small', type: 'button', text: 'Try again', onclick: () => { transcript.olderError = null; transcript.loadOlder(); } }));
    } else if (s.atTop && !s.hasMore && !s.empty) {
      ui.olderStatus.hidden = false;
      ui.olderStatus.textContent = 'Beginning of the conversation';
    } else {
      ui.olderStatus.hidden = true;
    }
    ui.jump.hidden = !s.showJump;
  },
});

ui.jump.addEventListener('click', () => transcript.jumpToLatest());

setApprover((callId, decision) => api.approve(state.session, callId, decision));
watchTranscript(ui.messages, (id) => transcript.byId.get(id));

const runs = new Runs({ transcript, send: (turn) => sender.enqueue(turn) });
const sender = new Sender({ transcript, runs, reload: () => conversation.load() });
const branches = new Branches(transcript);

// ---------------------------------------------------------------- signed out

/**
 * The relay refused this page's token. Without a token the page was never
 * signed in; with one, the token was rotated or revoked (the relay closes the
 * streams of a revoked credential, and the reconnect lands here). Either way
 * nothing is retried with it: what is queued stays queued for the new URL.
 */
function showUnauthorized() {
  if (state.authFailed) return;
  state.authFailed = true;
  conversation.stop();
  hideBanner();
  const signedOut = Boolean(token());
  ui.app.dataset.state = signedOut ? 'signed-out' : 'unauthorized';
  if (signedOut) {
    ui.authTitle.textContent = 'Signed out: open the new URL';
    ui.authText.replaceChildren(
      'The relay no longer accepts the token this window signed in with: it was rotated (',
      el('code', { text: 'loopchat token rotate' }),
      ') or the relay was set up anew. Open the new URL printed by ',
      el('code', { text: 'loopchat serve' }),
      ' (or run ',
      el('code', { text: 'loopchat info --json' }),
      ' for the token) in this browser; windows still open here then sign in again by themselves. Messages not yet sent stay queued.');
  }
  ui.authScreen.hidden = false;
  sender.render();
}

onUnauthorized(() => showUnauthorized());
ui.authRetry.addEventListener('click', () => location.reload());
// The new URL opened in another tab stores its token for this origin: take it.
window.addEventListener('storage', (e) => {
  if (e.key === TOKEN_STORAGE_KEY && e.newValue && state.authFailed) location.reload();
});

window.addEventListener('online', () => conversation.reconnectNow());

// Back after a long time hidden (sleep, another tab): reopen the stream.
let hiddenAt = 0;
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') {
    hiddenAt = Date.now();
  } else if (hiddenAt && Date.now() - hiddenAt > 30000) {
    conversation.refreshStream();
  }
});

// ---------------------------------------------------------------- sessions

const sessions = new SessionList({
  list: $('session-list'),
  status: $('session-list-status'),
  archivedToggle: $('archived-toggle'),
  // Deleting the open chat leaves it for a new one.
  onDeleted: (key) => { if (key === state.session) newChat(); },
  onSelect: (key) => {
    if (key === state.session) { closeSidebar(); return; }
    conversation.open(key, { push: true });
  },
  // A session's name (pi's session_info) is its title once the list has it.
  onChange: () => {
    if (state.session) ui.title.textContent = sessions.titleOf(state.session) || state.session;
  },
});

// Renaming writes pi's session_info entry into the transcript.
$('rename-session').addEventListener('click', async () => {
  const key = state.session;
  const name = window.prompt('Name this chat', sessions.titleOf(key) || '');
  if (name === null) return;
  try {
    await api.rename(key, name);
  } catch (err) {
    window.alert(`Could not rename: ${err.message}`);
    return;
  }
  await sessions.refresh();
});

// Export and import (the ⋯ menu): a download of the relay's file, and a
// file sent as is; the relay checks it and refuses a broken one whole.
const chatMenu = /** @type {HTMLDetailsElement} */ ($('chat-menu'));
for (const item of chatMenu.querySelectorAll('[data-export]')) {
  if (!(item instanceof HTMLElement)) continue;
  item.addEventListener('click', async () => {
    chatMenu.open = false;
    try {
      const { blob, name } = await exportSession(state.session, item.dataset.export);
      const href = URL.createObjectURL(blob);
      const a = el('a', { href, download: name, hidden: '' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60000);
    } catch (err) {
      window.alert(`Could not export: ${err.message}`);
    }
  });
}
$('import-chats').addEventListener('click', () => {
  chatMenu.open = false;
  $('import-input').click();
});
$('import-input').addEventListener('change', async (e) => {
  const input = /** @type {HTMLInputElement} */ (e.target);
  const file = input.files && input.files[0];
  input.value = '';
  if (!file) return;
  let res;
  try {
    res = await api.importFile(file);
  } catch (err) {
    window.alert(`Could not import ${file.name}: ${err.message}`);
    return;
  }
  await sessions.refresh();
  const first = res.sessions && res.sessions[0];
  if (first) conversation.open(first.key, { push: true });
});

function newChat() {
  conversation.open(newSessionKey(), { push: true });
  ui.input.focus();
}
ui.newChat.addEventListener('click', newChat);

window.addEventListener('popstate', () => {
  const key = sessionFromUrl() || DEFAULT_SESSION;
  if (key !== state.session) conversation.open(key, { push: false });
});

// ---------------------------------------------------------------- alerts

/**
 * The title carries the unread count ("(3) main — loopchat"): a browser tab
 * and the shell's window show it; the installed app shows it on its icon.
 */
let unreadCount = 0;
function updateTitle() {
  const base = `${state.session || DEFAULT_SESSION} — loopchat`;
  document.title = unreadCount > 0 ? `(${unreadCount > 99 ? '99+' : unreadCount}) ${base}` : base;
}

const alerts = new Alerts({
  onUnread: (n) => {
    if (n === unreadCount) return;
    unreadCount = n;
    updateTitle();
    setBadge(n);
  },
  bell: $('bell'),
  count: $('bell-count'),
  panel: $('alerts-panel'),
  list: $('alerts-list'),
  empty: $('alerts-empty'),
  markRead: $('mark-read'),
  onOpenSession: (key) => {
    if (!SESSION_KEY_RE.test(key)) return;
    if (key !== state.session) conversation.open(key, { push: true });
  },
});

// ---------------------------------------------------------------- presence

let lastPresence = null;
function sendPresence() {
  if (!state.session || state.authFailed) return;
  const focused = document.visibilityState === 'visible' && document.hasFocus();
  const key = `${state.session}|${focused}`;
  if (key === lastPresence) return;
  lastPresence = key;
  api.presence({ client: clientId, session: state.session, focused }).catch(() => { lastPresence = null; });
}
window.addEventListener('focus', sendPresence);
window.addEventListener('blur', sendPresence);
document.addEventListener('visibilitychange', sendPresence);

// ---------------------------------------------------------------- layout, keyboard

let animTimer = 0;
function animateSidebar() {
  ui.app.classList.add('sidebar-anim');
  clearTimeout(animTimer);
  animTimer = setTimeout(() => ui.app.classList.remove('sidebar-anim'), 300);
}

function openSidebar() {
  animateSidebar();
  ui.app.classList.add('sidebar-open');
  ui.scrim.hidden = false;
  ui.sidebarToggle.setAttribute('aria-expanded', 'true');
  const found = ui.sidebar.querySelector('[aria-current="page"]');
  const current = found instanceof HTMLElement ? found : ui.newChat;
  current.focus();
}

function closeSidebar() {
  if (!ui.app.classList.contains('sidebar-open')) return false;
  animateSidebar();
  ui.app.classList.remove('sidebar-open');
  ui.scrim.hidden = true;
  ui.sidebarToggle.setAttribute('aria-expanded', 'false');
  return true;
}

ui.sidebarToggle.addEventListener('click', () => {
  if (ui.app.classList.contains('sidebar-open')) closeSidebar();
  else openSidebar();
});
ui.scrim.addEventListener('click', closeSidebar);

const SHORTCUTS = [
  ['Enter', 'Send the message'],
  ['Shift+Enter', 'New line in the message'],
  ['Ctrl+Shift+O', 'New chat'],
  ['Ctrl+K', 'Search all chats'],
  ['/', 'Go to the message box'],
  ['Shift+Esc', 'Go to the message box'],
  ['Esc', 'Stop the reply, or close a panel'],
  ['?', 'Show this list'],
];

/** The shortcut sheet (`?`): a modal dialog, closed by Esc or its button. */
function toggleShortcuts() {
  let dialog = /** @type {HTMLDialogElement | null} */ (document.getElementById('shortcuts'));
  if (dialog?.open) { dialog.close(); return; }
  if (!dialog) {
    const rows = SHORTCUTS.map(([keys, what]) => el('tr', {}, el('th', { scope: 'row' }, el('kbd', { text: keys })), el('td', { text: what })));
    const close = el('button', { class: 'btn btn-small', type: 'button', text: 'Close' });
    dialog = el('dialog', { id: 'shortcuts', class: 'shortcuts', 'aria-labelledby': 'shortcuts-title' },
      el('h2', { id: 'shortcuts-title', text: 'Keyboard shortcuts' }),
      el('table', {}, el('tbody', {}, ...rows)),
      close);
    close.addEventListener('click', () => dialog.close());
    document.body.append(dialog);
  }
  dialog.showModal();
}

function isEditable(t) {
  return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
}

document.addEventListener('keydown', (e) => {
  const mod = e.ctrlKey || e.metaKey;
  if (mod && !e.shiftKey && !e.altKey && (e.key === 'k' || e.key === 'K')) {
    e.preventDefault();
    search.open();
    return;
  }
  // Its own keys (Escape closes it) must not reach the chat behind it.
  if (search.isOpen) return;
  if (mod && e.shiftKey && (e.key === 'o' || e.key === 'O')) {
    e.preventDefault();
    newChat();
    return;
  }
  if (e.key === 'Escape' && e.shiftKey) {
    e.preventDefault();
    composer.focus();
    return;
  }
  if (e.key === '?' && !mod && !e.altKey && !isEditable(e.target)) {
    e.preventDefault();
    toggleShortcuts();
    return;
  }
  if (e.key === '/' && !mod && !e.altKey && !isEditable(e.target)) {
    e.preventDefault();
    composer.focus();
    return;
  }
  if (e.key === 'Escape') {
    if (alerts.close()) { $('bell').focus(); return; }
    if (closeSidebar()) { ui.sidebarToggle.focus(); return; }
    if (runs.activeId) {
      e.preventDefault();
      runs.stop();
    }
  }
});

// ---------------------------------------------------------------- search

const search = new SearchDialog({
  dialog: /** @type {HTMLDialogElement} */ ($('search-dialog')),
  input: /** @type {HTMLInputElement} */ ($('search-input')),
  results: $('search-results'),
  status: $('search-status'),
  onOpen: (hit) => conversation.openHit(hit),
});
$('search-open').addEventListener('click', () => search.open());

// The theme picker: boot.js applies the choice (and the system's, live).
const themePick = /** @type {HTMLSelectElement} */ ($('theme'));
const theme = /** @type {PageWindow} */ (window).loopchatTheme;
if (theme) {
  themePick.value = theme.chosen();
  themePick.addEventListener('change', () => {
    if (themePick.value === 'system') store.remove(theme.key);
    else store.set(theme.key, themePick.value);
    theme.apply();
  });
}

const composer = new Composer({
  form: /** @type {HTMLFormElement} */ ($('composer')),
  input: ui.input,
  send: $('send'),
  attachBtn: $('attach'),
  fileInput: /** @type {HTMLInputElement} */ ($('file-input')),
  previews: $('attach-previews'),
  error: $('composer-error'),
  dropZone: /** @type {HTMLElement} */ (document.querySelector('.main')),
  dropOverlay: $('drop-overlay'),
  onSubmit: ({ text, files, previews }) => {
    store.remove(draftKey(state.session));
    return sender.enqueue({ text, files, previews });
  },
});

const conversation = new Conversation({
  transcript,
  runs,
  sender,
  branches,
  sessions,
  alerts,
  search,
  composer,
  clientId,
  onShow: (key) => {
    updateTitle();
    ui.title.textContent = sessions.titleOf(key) || key;
    sessions.setCurrent(key);
    closeSidebar();
  },
  onOpened: () => sendPresence(),
  onOnline: () => refreshLiveStatus(),
});

// ---------------------------------------------------------------- start

function start() {
  performance.mark('loopchat:start');
  registerServiceWorker();
  setUpInstallPrompt({ root: $('install-prompt'), text: $('install-text'), accept: $('install-accept'), dismiss: $('install-dismiss') });
  // boot.js took #token= out of the address bar, and the relay redirects a
  // legacy ?token= into the fragment; never leave one in the address bar regardless.
  const u = new URL(location.href);
  if (u.searchParams.has('token')) {
    u.searchParams.delete('token');
    history.replaceState(null, '', u.pathname + u.search + u.hash);
  }
  sender.outbox.sweep();
  const key = sessionFromUrl() || DEFAULT_SESSION;
  conversation.open(key, { push: false }).then(() => {
    if (!state.authFailed) {
      sessions.refresh();
      alerts.load();
    }
  });
  setInterval(() => {
    if (document.visibilityState === 'visible' && state.connected) refreshLiveStatus();
  }, LIVE_STATUS_EVERY);
  composer.focus();
}

/** How often the sidebar's "N windows · M runs" line is refreshed while visible. */
const LIVE_STATUS_EVERY = 5000;

/**
 * The relay's live counts in the sidebar: windows are the open event
 * streams (this one included), runs the turns in flight in every session.
 * A failure just hides the line; the banner reports a relay that is down.
 */
async function refreshLiveStatus() {
  try {
    const s = await api.status();
    const c = s.connections.byKind;
    const windows = c.sse + c.websocket + c.shell;
    const inFlight = s.runsInFlight;
    const failing = (s.checks && s.checks.failing) || 0;
    // Failing checks only: a healthy relay's line stays short.
    ui.liveStatus.textContent = `${windows} ${windows === 1 ? 'window' : 'windows'} · ${inFlight} ${inFlight === 1 ? 'run' : 'runs'}`
      + (failing ? ` · ${failing} failing ${failing === 1 ? 'check' : 'checks'}` : '');
    const checks = s.checks ? ` · checks ${s.checks.ok} ok, ${s.checks.failing} failing, ${s.checks.running} running` : '';
    ui.liveStatus.title = `relay up ${s.uptimeSecs} s · ${s.sessions} sessions · alert journal ${s.journal.entries} entries${checks}`;
    ui.liveStatus.hidden = false;
  } catch {
    ui.liveStatus.hidden = true;
  }
}

start();
