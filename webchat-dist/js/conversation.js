// @ts-check
// The conversation view: which session is shown, loading it (/info), and
// following it with the relay's event stream (/webchat/events), the single
// source of what the transcript shows. Its stored messages go to the
// transcript, its runs' events to runs.js; the session's pickers (thinking
// level, model), its draft and its URL are kept here too.

import { api } from './api.js';
import { EventStream } from './events.js';
import { applyPending } from './tools.js';
import { SESSION_KEY_RE, store, el, WELCOME_DONE_KEY, afterPaint, whenIdle } from './util.js';
import { warmTimeFormats } from './time.js';
import { ui, announce, showBanner, hideBanner, showError, showOfflineBanner } from './page.js';
import { state, PAGE, DEFAULT_SESSION } from './state.js';
import { THINKING_LEVELS } from './sending.js';

/** The session named by the page's URL (`?session=`), if it is a valid key. */
export function sessionFromUrl() {
  const key = new URL(location.href).searchParams.get('session');
  return key && SESSION_KEY_RE.test(key) ? key : null;
}

function setUrl(key, push) {
  const u = new URL(location.href);
  u.searchParams.delete('token');
  u.searchParams.set('session', key);
  if (u.href === location.href) return;
  if (push) history.pushState({ session: key }, '', u.pathname + u.search + u.hash);
  else history.replaceState({ session: key }, '', u.pathname + u.search + u.hash);
}

/** The composer's unsent text of each session, kept across reloads. */
export const draftKey = (session) => `loopchat.draft.${session}`;

function thinkingFor(key, fallback) {
  const v = store.get(`loopchat.thinking.${key}`);
  return THINKING_LEVELS.includes(v) ? v : (THINKING_LEVELS.includes(fallback) ? fallback : 'off');
}

/**
 * A browser's first visit (and the first after a new tour or relay version)
 * goes through the welcome tour once. In the desktop shell (which has
 * window.ipc) the shell decides, from its own settings.
 * @param {Info} info
 */
function welcomeDue(info) {
  if (/** @type {PageWindow} */ (window).ipc || !info.welcomeVersion) return false;
  return store.get(WELCOME_DONE_KEY) !== `${info.welcomeVersion}:${info.version}`;
}

export class Conversation {
  /**
   * @param {object} o
   * @param {Transcript} o.transcript
   * @param {Runs} o.runs
   * @param {Sender} o.sender
   * @param {Branches} o.branches
   * @param {SessionList} o.sessions
   * @param {Alerts} o.alerts
   * @param {SearchDialog} o.search
   * @param {Composer} o.composer
   * @param {string} o.clientId      this tab's id, for presence
   * @param {(key: string) => void} o.onShow  another session is shown (before it is loaded)
   * @param {() => void} o.onOpened   a session was opened and loaded
   * @param {() => void} o.onOnline   the stream (re)connected
   */
  constructor({ transcript, runs, sender, branches, sessions, alerts, search, composer, clientId, onShow, onOpened, onOnline }) {
    this.transcript = transcript;
    this.runs = runs;
    this.sender = sender;
    this.branches = branches;
    this.sessions = sessions;
    this.alerts = alerts;
    this.search = search;
    this.composer = composer;
    this.clientId = clientId;
    this.onShow = onShow;
    this.onOpened = onOpened;
    this.onOnline = onOnline;
    /** @type {EventStream | null} */
    this.stream = null;
    /** Counts loads: an answer to an older one is dropped. */
    this.loadGen = 0;
    this.retryLoad = 0;
    this.offlineBefore = false;
    this.lastResetAt = 0;

    ui.model.addEventListener('change', () => {
      store.set(`loopchat.model.${state.session}`, ui.model.value);
    });
    ui.thinking.addEventListener('change', () => {
      store.set(`loopchat.thinking.${state.session}`, ui.thinking.value);
    });
    ui.input.addEventListener('input', () => this.saveDraft());
  }

  saveDraft() {
    if (!state.session) return;
    const text = ui.input.value;
    if (text) store.set(draftKey(state.session), text);
    else store.remove(draftKey(state.session));
  }

  restoreDraft() {
    this.composer.setText(store.get(draftKey(state.session), '') || '');
  }

  /**
   * Shows a session: its URL, its draft and pickers, then its messages.
   * @param {string} key
   * @param {{push?: boolean}} [o]  push: a new history entry (else the current one is replaced)
   */
  async open(key, { push = false } = {}) {
    if (this.stream) this.stream.close();
    this.stream = null;
    if (key !== state.session) {
      this.saveDraft();
      state.session = key;
      this.restoreDraft();
    }
    setUrl(key, push);
    this.onShow(key);
    ui.thinking.value = thinkingFor(key, 'off');
    await this.load();
    this.onOpened();
  }

  /** Stops following the session (the token was refused). */
  stop() {
    if (this.stream) this.stream.close();
    clearTimeout(this.retryLoad);
  }

  /** Forgets what was live: runs in flight and pending bubbles. */
  clearLive() {
    this.runs.clear();
    this.sender.clear();
  }

  /** (Re)load the shown session from /info and follow its events. */
  async load(attempt = 0) {
    const gen = ++this.loadGen;
    const key = state.session;
    /** @type {Info} */
    let info;
    try {
      info = await api.info(key, PAGE);
    } catch (err) {
      if (gen !== this.loadGen || state.authFailed) return;
      if (err.offline) {
        ui.app.dataset.state = 'offline';
        const delay = Math.min(30000, 1000 * 2 ** attempt);
        showOfflineBanner(Date.now() + delay, 'The relay cannot be reached', () => this.reconnectNow());
        this.retryLoad = setTimeout(() => { if (gen === this.loadGen) this.load(attempt + 1); }, delay);
        this.sender.render();
        return;
      }
      if (err.code === 'invalid_session_key' && key !== DEFAULT_SESSION) {
        showError(`“${key}” is not a valid session key; opened “${DEFAULT_SESSION}” instead.`);
        this.open(DEFAULT_SESSION);
        return;
      }
      ui.app.dataset.state = 'error';
      showBanner(`Could not open the session: ${err.message}`, { kind: 'error', action: () => this.load(), actionLabel: 'Try again' });
      return;
    }
    if (gen !== this.loadGen) return;
    if (welcomeDue(info)) {
      location.replace(`welcome.html?${new URLSearchParams({ v: String(info.welcomeVersion), relay: info.version, session: key })}`);
      return;
    }
    performance.mark('loopchat:info');
    clearTimeout(this.retryLoad);
    state.info = info;
    ui.app.dataset.state = 'ready';
    hideBanner();
    this.clearLive();
    this.transcript.reset(info.initialMessages || [], info.hasMore);
    state.viewLeaf = null;
    applyPending(info.pendingApprovals);
    performance.mark('loopchat:rendered');
    if (!store.get(`loopchat.thinking.${key}`)) ui.thinking.value = thinkingFor(key, info.thinkingLevel);
    this.composer.setLimits(info.attachments);
    const agent = info.agent || { backend: null, model: null };
    ui.agentInfo.textContent = [agent.backend, agent.model, info.version ? `v${info.version}` : null].filter(Boolean).join(' · ');
    let since = Number(info.lastSeq) || 0;
    if (info.activeRun && info.activeRun.runId) {
      // Show the reply in progress: replay its events from just before run.start.
      since = Math.max(0, Number(info.activeRun.startSeq) - 1);
      this.runs.resume(info.activeRun.runId);
    }
    this.sender.render();
    // What the messages' first paint does not need waits until after it: the
    // requests' answers and the formatters' set-up would otherwise run first.
    // The stream starts from `since`, so nothing that happens meanwhile is lost.
    await afterPaint();
    if (gen !== this.loadGen) return;
    whenIdle(warmTimeFormats);
    this.branches.refresh(key);
    this.loadModels(key, info.model);
    this.startStream(since);
    this.sender.outbox.flush();
  }

  /**
   * The model picker: the backend's models (GET /webchat/models), the
   * session's current one selected. The choice goes with the next turn
   * (`model`), which stores it in the session (Decision 80). Hidden when the
   * backend offers no choice.
   * @param {string} key
   * @param {string | undefined} current
   */
  async loadModels(key, current) {
    /** @type {ModelsResponse | null} */
    let list;
    try {
      list = await api.models();
    } catch {
      list = null;
    }
    if (key !== state.session) return;
    const models = list && Array.isArray(list.models) ? [...list.models] : [];
    const chosen = store.get(`loopchat.model.${key}`) || current || (list && list.default) || '';
    if (chosen && !models.includes(chosen) && list && list.source !== 'none') models.unshift(chosen);
    // a backend that is down: the picker says so (its reason on hover) instead of vanishing
    const unavailable = models.length === 0 && Boolean(list && list.error);
    ui.modelPicker.hidden = models.length === 0 && !unavailable;
    ui.modelPicker.title = unavailable ? `The model list could not be read: ${list.error}` : '';
    ui.model.disabled = unavailable;
    ui.model.replaceChildren(...(unavailable ? [el('option', { value: '', text: 'unavailable' })] : models.map((m) => el('option', { value: m, text: m }))));
    if (chosen && models.includes(chosen)) ui.model.value = chosen;
  }

  /** @param {number} since  the last seq the page reflects */
  startStream(since) {
    if (this.stream) this.stream.close();
    const stream = new EventStream({
      session: state.session,
      since,
      notifySince: this.alerts.maxSeq,
      client: this.clientId,
      onEvent: (ev) => this.handleEvent(ev),
      onNotification: (n) => { this.alerts.add(n); },
      // The session list is pushed: no polling.
      onSessions: (ev) => {
        this.sessions.apply(ev);
        this.search.changed();
      },
      onState: (s) => this.onStreamState(stream, s),
      onReset: (seq) => {
        // The relay cannot replay what we missed (it restarted, or its log moved
        // on): start over from /info. A second reset straight after that means the
        // relay's log starts at `seq`: follow from there instead of looping.
        stream.close();
        const now = Date.now();
        if (now - (this.lastResetAt || 0) < 10000) {
          this.startStream(seq);
          return;
        }
        this.lastResetAt = now;
        this.load();
      },
    });
    this.stream = stream;
    stream.start();
  }

  /**
   * @param {EventStream} stream
   * @param {StreamState} s
   */
  onStreamState(stream, s) {
    if (stream !== this.stream) return;
    const was = state.connected;
    state.connected = s.connected;
    ui.app.classList.toggle('offline', !s.connected);
    if (s.connected) {
      // Changes while no stream was open are not replayed: fetch the list
      // once per stream (a session switch opens a new one).
      if (!stream.listFetched) {
        stream.listFetched = true;
        this.sessions.refreshSoon(0);
      }
      hideBanner();
      // This window's own stream is counted now.
      if (!was) this.onOnline();
      ui.banner.dataset.state = 'online';
      if (!was && this.offlineBefore) {
        // back after a disconnect: catch up on what the stream does not replay
        this.sessions.refreshSoon(0);
        this.alerts.load();
      }
      this.offlineBefore = false;
      this.sender.outbox.flush();
    } else {
      this.offlineBefore = true;
      showOfflineBanner(s.retryAt || Date.now() + (s.retryIn || 1000), 'Connection to the relay lost', () => this.reconnectNow());
      // Distinguish "relay down" from "token no longer accepted" at once (a
      // refused token is reported by api.js), not only at the next reconnect.
      api.sessions().catch(() => {});
    }
    this.sender.render();
  }

  /** The banner's "Reconnect now", the browser going online. */
  reconnectNow() {
    if (this.stream && !this.stream.closed) this.stream.reconnectNow();
    else this.load();
  }

  /** Reopens the stream (back after a long time hidden: it may be half-dead). */
  refreshStream() {
    if (this.stream) this.stream.refresh();
  }

  /** @param {SessionEvent} ev */
  handleEvent(ev) {
    if (ev.type !== 'message') {
      this.runs.handle(ev);
      return;
    }
    const msg = ev.message;
    if (!msg || msg.id == null) return;
    const runId = ev.runId || null;
    if (msg.role === 'user') {
      this.sender.match(msg);
      if (runId) this.runs.userMessage(runId, msg);
      this.transcript.add(msg, runId ? { runId } : undefined);
    } else {
      this.runs.stored(runId, msg);
    }
    this.sender.render();
  }

  /**
   * Opens a hit's session at its message: a page around it on the
   * conversation's path, or on the hit's own branch when it is on another
   * one; the message is highlighted for a moment and takes the focus.
   * @param {SearchHit} hit
   */
  async openHit(hit) {
    if (hit.session !== state.session) await this.open(hit.session, { push: true });
    const key = state.session;
    let page;
    let leaf = null;
    try {
      page = await api.historyAround(key, hit.messageId, PAGE);
    } catch (err) {
      if (err.status !== 404 && err.code !== 'not_found') {
        showError(`Could not open the message: ${err.message}`);
        return;
      }
      try {
        page = await api.historyAround(key, hit.messageId, PAGE, hit.messageId);
        leaf = hit.messageId;
      } catch (err2) {
        showError(`Could not open the message: ${err2.message}`);
        return;
      }
    }
    if (key !== state.session) return;
    state.viewLeaf = leaf;
    const node = this.transcript.resetAround(page.messages || [], page.hasMore, page.hasNewer, hit.messageId);
    this.branches.decorate();
    if (!node) return;
    node.classList.add('search-target');
    node.setAttribute('tabindex', '-1');
    node.focus({ preventScroll: true });
    announce('Showing the message found');
    setTimeout(() => node.classList.remove('search-target'), 2500);
  }
}
