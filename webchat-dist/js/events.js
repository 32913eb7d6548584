// The live event stream of one session (SSE on /webchat/events).
//
// The browser's own EventSource reconnect is not used: it retries at a fixed
// interval and gives up for good on an HTTP error. Instead every error closes
// the source and a new one is opened after a backoff (1 s doubling to 30 s),
// resuming from the last session seq seen (`since`) and the last notification
// seq seen (`notifySince`), so nothing is lost; events at or below the last
// seq are dropped, so nothing is shown twice.

const MIN_BACKOFF = 1000;
const MAX_BACKOFF = 30000;

export class EventStream {
  /**
   * @param {object} o
   * @param {string} o.session
   * @param {number} o.since        last session seq already reflected in the UI
   * @param {number|null} o.notifySince  last notification seq already known (null: none wanted replayed)
   * @param {(ev: object) => void} o.onEvent     session events, in order, deduplicated
   * @param {(n: object, ev: object) => void} o.onNotification
   * @param {(state: {connected: boolean, retryIn?: number, attempt?: number}) => void} o.onState
   * @param {(seq: number) => void} o.onReset   the relay cannot replay from `since`
   */
  constructor({ session, since, notifySince, client, onEvent, onNotification, onState, onReset }) {
    this.session = session;
    this.client = client;
    this.lastSeq = Number(since) || 0;
    this.notifySince = notifySince;
    this.onEvent = onEvent;
    this.onNotification = onNotification;
    this.onState = onState;
    this.onReset = onReset;
    this.es = null;
    this.backoff = MIN_BACKOFF;
    this.timer = null;
    this.closed = false;
    this.connected = false;
    this.attempt = 0;
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
    if (this.es) this.es.close();
    const es = new EventSource(this.url(), { withCredentials: false });
    this.es = es;
    es.onopen = () => {
      if (this.es !== es) return;
      this.connected = true;
      this.backoff = MIN_BACKOFF;
      this.attempt = 0;
      this.onState({ connected: true });
    };
    es.onmessage = (msg) => {
      if (this.es !== es) return;
      let ev;
      try { ev = JSON.parse(msg.data); } catch { return; }
      this.dispatch(ev);
    };
    es.onerror = () => {
      if (this.es !== es) return;
      es.close();
      this.es = null;
      this.connected = false;
      this.scheduleReconnect();
    };
  }

  dispatch(ev) {
    if (!ev || typeof ev !== 'object') return;
    if (ev.type === 'notification') {
      const n = ev.notification || {};
      const nseq = Number(n.seq ?? ev.seq);
      if (Number.isFinite(nseq) && (this.notifySince == null || nseq > this.notifySince)) this.notifySince = nseq;
      this.onNotification(n, ev);
      return;
    }
    if (ev.type === 'ping') return;
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
    if (this.es) this.es.close();
    this.es = null;
    this.connected = false;
  }
}
