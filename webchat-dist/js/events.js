// @ts-check
// The live event stream of one session (SSE on /webchat/events).
//
// Read with fetch, not EventSource: an EventSource cannot send the bearer
// token (the page has no cookie, on purpose: see api.js), and it hides the
// status of a refused request, so a rotated token would look like a relay
// that is down. Every error ends the stream and a new one is opened after a
// backoff (1 s doubling to 30 s),
// resuming from the last session seq seen (`since`) and the last notification
// seq seen (`notifySince`), so nothing is lost; events at or below the last
// seq are dropped, so nothing is shown twice.

import { authHeaders, errorFrom, readEventStream } from './api.js';

const MIN_BACKOFF = 1000;
const MAX_BACKOFF = 30000;

export class EventStream {
  /**
   * @param {object} o
   * @param {string} o.session
   * @param {number} o.since        last session seq already reflected in the UI
   * @param {number|null} o.notifySince  last notification seq already known (null: none wanted replayed)
   * @param {string} [o.client]   this tab's id (presence)
   * @param {(ev: SessionEvent) => void} o.onEvent     session events, in order, deduplicated
   * @param {(ev: SessionsEvent) => void} [o.onSessions] `sessions` events (a change of the session list)
   * @param {(n: RelayNotification, ev: StreamEvent) => void} o.onNotification
   * @param {(state: StreamState) => void} o.onState
   * @param {(seq: number) => void} o.onReset   the relay cannot replay from `since`
   */
  constructor({ session, since, notifySince, client, onEvent, onNotification, onSessions, onState, onReset }) {
    this.session = session;
    this.client = client;
    this.lastSeq = Number(since) || 0;
    this.notifySince = notifySince;
    this.onEvent = onEvent;
    this.onNotification = onNotification;
    this.onSessions = onSessions;
    this.onState = onState;
    this.onReset = onReset;
    this.conn = null;
    this.backoff = MIN_BACKOFF;
    this.timer = null;
    this.closed = false;
    this.connected = false;
    this.attempt = 0;
    /** The session list was fetched for this stream (the app's mark). */
    this.listFetched = false;
  }

  start() {
    this.closed = false;
    this.open();
  }

  url() {
    const u = new URL('events', document.baseURI);
    u.searchParams.set('session', this.session);
    u.searchParams.set('since', String(this.lastSeq));
    if (this.notifySince != null) u.searchParams.set('notifySince', String(this.notifySince));
    if (this.client) u.searchParams.set('client', this.client);
    return u.pathname + u.search;
  }

  open() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.closed) return;
    if (this.conn) this.conn.abort();
    const conn = new AbortController();
    this.conn = conn;
    this.read(conn);
  }

  /** One connection: open, follow until it ends, then reconnect (unless refused or closed). */
  async read(conn) {
    const mine = () => this.conn === conn;
    let res;
    try {
      res = await fetch(this.url(), {
        headers: { Accept: 'text/event-stream', ...authHeaders() },
        credentials: 'omit',
        cache: 'no-store',
        signal: conn.signal,
      });
    } catch {
      if (mine()) this.lost();
      return;
    }
    if (!mine()) return;
    if (!res.ok) {
      const err = await errorFrom(res); // a refused token is reported to the app from there
      if (!mine()) return;
      if (err.status === 401 || err.status === 403) {
        this.conn = null;
        this.connected = false;
        this.onState({ connected: false, refused: true });
        return;
      }
      this.lost();
      return;
    }
    this.connected = true;
    this.backoff = MIN_BACKOFF;
    this.attempt = 0;
    this.onState({ connected: true });
    try {
      await readEventStream(res.body, (data) => {
        if (!mine()) return;
        let ev;
        try { ev = JSON.parse(data); } catch { return; }
        try {
          this.dispatch(ev);
        } catch (err) {
          // A bug in a handler must not cut the stream; it is still reported.
          setTimeout(() => { throw err; });
        }
      });
    } catch {
      /* the connection broke: reconnect below */
    }
    if (mine()) this.lost();
  }

  lost() {
    this.conn = null;
    this.connected = false;
    this.scheduleReconnect();
  }

  /** @param {StreamEvent} ev */
  dispatch(ev) {
    if (!ev || typeof ev !== 'object') return;
    if (ev.type === 'notification') {
      const n = ev.notification || /** @type {RelayNotification} */ ({});
      const nseq = Number(n.seq ?? ev.seq);
      if (Number.isFinite(nseq) && (this.notifySince == null || nseq > this.notifySince)) this.notifySince = nseq;
      this.onNotification(n, ev);
      return;
    }
    if (ev.type === 'ping') return;
    // The session list's changes: live only, not positions in the log.
    if (ev.type === 'sessions') {
      if (this.onSessions) this.onSessions(ev);
      return;
    }
    if (ev.type === 'reset') {
      // The relay lost the log we asked to resume from (e.g. it restarted):
      // the app reloads the session and resubscribes.
      this.onReset(Number(ev.seq) || 0);
      return;
    }
    const seq = Number(ev.seq);
    if (Number.isFinite(seq)) {
      if (seq <= this.lastSeq) return; // already seen: a replay overlap
      this.lastSeq = seq;
    }
    this.onEvent(ev);
  }

  scheduleReconnect() {
    if (this.closed) return;
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF);
    this.attempt += 1;
    this.onState({ connected: false, retryIn: delay, attempt: this.attempt, retryAt: Date.now() + delay });
    this.timer = setTimeout(() => this.open(), delay);
  }

  /** Retry at once (the banner's "Reconnect now", the browser going online). */
  reconnectNow() {
    if (this.closed || this.connected) return;
    this.backoff = MIN_BACKOFF;
    this.open();
  }

  /**
   * Reopen now, resuming from the last seq (after the machine slept, a
   * half-open connection can look alive forever; a fresh one costs nothing
   * since replayed events are deduplicated).
   */
  refresh() {
    if (this.closed) return;
    this.backoff = MIN_BACKOFF;
    this.open();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.conn) this.conn.abort();
    this.conn = null;
    this.connected = false;
  }
}
