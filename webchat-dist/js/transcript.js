// @ts-check
// The conversation view: a window over the loaded messages.
//
// Sessions can hold thousands of messages (11 MB transcripts), so only a
// window of at most MAX_NODES message elements is ever in the DOM. The loaded
// messages (oldest → newest, deduplicated by id) stay in memory as plain
// objects; elements outside the window are dropped and re-created when the
// user scrolls back. Scrolling near the top extends the window upwards, and
// when it reaches the oldest loaded message, fetches the next older page.
// Every change above the viewport keeps the first visible message where it
// was on screen, so prepending never makes the view jump.

import { afterPaint, whenIdle } from './util.js';

const MAX_NODES = 200; // ≤ 300 message nodes in the DOM, with room for live/pending bubbles
const CHUNK = 50;
const FIRST_PAINT = 12;
const EDGE_PX = 900; // how close to an edge the window grows
const STICK_PX = 80; // "at the bottom" tolerance

/**
 * What the app's chrome shows of the window: the empty state, the older
 * pages' status and the "Latest" button.
 * @typedef {object} WindowState
 * @property {boolean} empty
 * @property {boolean} loadingOlder
 * @property {Error | null} olderError
 * @property {boolean} hasMore
 * @property {boolean} atTop
 * @property {boolean} showJump
 */

export class Transcript {
  /**
   * @param {object} o
   * @param {HTMLElement} o.scroller  the scrolling element
   * @param {HTMLElement} o.list      container of stored-message elements
   * @param {HTMLElement} o.root      element that gets the `detached` class when the window is not at the latest messages
   * @param {(msg: Message, extra: MessageExtra) => HTMLElement} o.render
   * @param {(beforeId: string) => Promise<HistoryPage>} o.fetchOlder
   * @param {(afterId: string) => Promise<HistoryPage>} [o.fetchNewer]
   *        the page after a message, when the window was opened around an older one
   * @param {() => void} [o.onLatest]  load the latest page again (the window is not at it)
   * @param {(state: WindowState) => void} o.onChange  window/empty/loading state for the app's chrome
   */
  constructor({ scroller, list, root, render, fetchOlder, fetchNewer, onLatest, onChange }) {
    this.scroller = scroller;
    this.list = list;
    this.root = root;
    this.render = render;
    this.fetchOlder = fetchOlder;
    this.fetchNewer = fetchNewer || (async () => ({ messages: [], hasNewer: false }));
    this.onLatest = onLatest || (() => {});
    this.onChange = onChange || (() => {});
    this.generation = 0;
    this.clear();
    this.raf = 0;
    scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    window.addEventListener('resize', () => this.onScroll());
  }

  clear() {
    this.generation += 1;
    /** @type {Message[]} the loaded messages, oldest first */
    this.msgs = [];
    /** @type {Map<string, Message>} */
    this.byId = new Map();
    /** @type {Map<string, MessageExtra>} */
    this.extras = new Map();
    /** @type {Map<string, HTMLElement>} the elements of the window */
    this.nodes = new Map();
    this.start = 0;
    this.end = 0;
    this.hasMore = false;
    this.loadingOlder = false;
    /** @type {Error | null} */
    this.olderError = null;
    // Newer messages than the last loaded one exist (a page opened around a
    // search hit): live messages are not appended until they are loaded.
    this.hasNewer = false;
    this.loadingNewer = false;
    this.newerError = null;
    // Between a reset's first paint and its fill-in: the scroll that
    // scrollToBottom causes must not grow the window before that paint.
    this.settling = false;
    this.list.replaceChildren();
    this.root.classList.remove('detached');
  }

  /** Replace everything with a fresh latest page and show its end. */
  reset(messages, hasMore) {
    this.clear();
    for (const m of messages || []) this.pushData(m);
    this.hasMore = Boolean(hasMore);
    // Paint the newest few first (what the user sees), then fill in the rest
    // of the page above them once the page is idle after that paint: the
    // first paint of a session with long messages costs a fraction of the
    // full page's layout, and on two cores the fill-in would otherwise take
    // the CPU from that paint's raster.
    this.start = Math.max(0, this.msgs.length - FIRST_PAINT);
    this.end = this.msgs.length;
    this.renderWindow();
    this.scrollToBottom();
    this.changed();
    const gen = this.generation;
    if (this.start > 0) {
      this.settling = true;
      // A first-paint's worth at a time, each when the page is idle: one
      // prepend of the whole rest was a single 30–75 ms task, during which
      // the page could not answer a key or a click.
      const fill = () => {
        if (gen !== this.generation) return;
        const stick = this.isNearBottom();
        this.growUp(FIRST_PAINT);
        if (stick) this.scrollToBottom();
        this.changed();
        if (this.start > 0) {
          whenIdle(fill);
          return;
        }
        this.settling = false;
        // what a scroll while settling asked for (an older page, say)
        this.onScroll();
      };
      afterPaint().then(() => whenIdle(fill));
    }
  }

  /**
   * Replace everything with a page around one message (a search hit), show
   * that message in the middle of the view and return its element.
   */
  resetAround(messages, hasMore, hasNewer, id) {
    this.clear();
    for (const m of messages || []) this.pushData(m);
    this.hasMore = Boolean(hasMore);
    this.hasNewer = Boolean(hasNewer);
    const at = Math.max(0, this.msgs.findIndex((m) => m.id === id));
    this.start = Math.max(0, at - MAX_NODES / 2);
    this.end = Math.min(this.msgs.length, this.start + MAX_NODES);
    this.renderWindow();
    const node = this.nodes.get(id) || null;
    if (node) node.scrollIntoView({ block: 'center' });
    this.changed();
    return node;
  }

  pushData(msg, extra) {
    if (!msg || msg.id == null || this.byId.has(msg.id)) return false;
    this.msgs.push(msg);
    this.byId.set(msg.id, msg);
    if (extra) this.extras.set(msg.id, extra);
    return true;
  }

  has(id) {
    return this.byId.has(id);
  }

  get size() {
    return this.msgs.length;
  }

  /** The rendered element of a message, if it is in the window. */
  node(id) {
    return this.nodes.get(id) || null;
  }

  /** The id of the stored reply of a run, if it arrived (not a tool step's message). */
  assistantIdForRun(runId) {
    for (const [id, extra] of this.extras) {
      if (extra && extra.runId === runId) {
        const m = this.byId.get(id);
        if (m && m.role === 'assistant' && m.stopReason !== 'toolUse') return id;
      }
    }
    return null;
  }

  /** Remove one message (a placeholder replaced by the real thing). */
  remove(id) {
    const i = this.msgs.findIndex((m) => m.id === id);
    if (i < 0) return;
    this.msgs.splice(i, 1);
    this.byId.delete(id);
    this.extras.delete(id);
    const node = this.nodes.get(id);
    if (node) node.remove();
    this.nodes.delete(id);
    if (i < this.start) this.start -= 1;
    if (i < this.end) this.end -= 1;
  }

  setExtra(id, extra) {
    this.extras.set(id, { ...(this.extras.get(id) || {}), ...extra });
  }

  /** The latest stored messages (newest last), for Retry's "what did the user say". */
  previousUserText(id) {
    let i = this.msgs.findIndex((m) => m.id === id);
    if (i < 0) i = this.msgs.length;
    for (let j = i - 1; j >= 0; j--) {
      if (this.msgs[j].role === 'user') return this.msgs[j];
    }
    return null;
  }

  get atLatest() {
    return this.end === this.msgs.length && !this.hasNewer;
  }

  isNearBottom() {
    const sc = this.scroller;
    return this.atLatest && sc.scrollHeight - sc.scrollTop - sc.clientHeight < STICK_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** Run a change at the bottom (delta, new bubble); follow it if the user was at the bottom. */
  atBottomChange(fn) {
    const stick = this.isNearBottom();
    fn();
    if (stick) this.scrollToBottom();
    this.changed();
  }

  /** Add a new message (from the event stream). Returns false for a duplicate. */
  add(msg, extra) {
    if (this.byId.has(msg.id)) {
      if (extra) this.setExtra(msg.id, extra);
      return false;
    }
    // Not contiguous with what is loaded: it comes with the newer pages.
    if (this.hasNewer) return false;
    const wasLatest = this.atLatest;
    const stick = this.isNearBottom();
    this.pushData(msg, extra);
    if (wasLatest) {
      const node = this.make(msg);
      this.list.append(node);
      this.end = this.msgs.length;
      if (this.end - this.start > MAX_NODES) this.withAnchor(() => this.trimTop());
      if (stick) this.scrollToBottom();
    }
    this.changed();
    return true;
  }

  make(msg) {
    const node = this.render(msg, this.extras.get(msg.id) || {});
    this.nodes.set(msg.id, node);
    return node;
  }

  /** Re-render one message in place (e.g. its run failed after it arrived). */
  refresh(id) {
    const old = this.nodes.get(id);
    const msg = this.byId.get(id);
    if (!old || !msg) return;
    old.replaceWith(this.make(msg));
  }

  renderWindow() {
    this.nodes.clear();
    const frag = document.createDocumentFragment();
    for (let i = this.start; i < this.end; i++) frag.append(this.make(this.msgs[i]));
    this.list.replaceChildren(frag);
  }

  /** Show the newest messages again (the "Latest" button, sending a message). */
  jumpToLatest() {
    if (this.hasNewer) {
      this.onLatest();
      return;
    }
    if (!this.atLatest) {
      this.start = Math.max(0, this.msgs.length - CHUNK);
      this.end = this.msgs.length;
      this.renderWindow();
    }
    this.scrollToBottom();
    this.changed();
  }

  /** Keep the first visible message at the same place on screen across `fn`. */
  withAnchor(fn) {
    const top = this.scroller.getBoundingClientRect().top;
    let anchor = null;
    let offset = 0;
    const kids = this.list.children;
    // binary search for the first child whose bottom is below the viewport top
    let lo = 0;
    let hi = kids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (kids[mid].getBoundingClientRect().bottom > top) hi = mid - 1;
      else lo = mid + 1;
    }
    if (lo < kids.length) {
      anchor = kids[lo];
      offset = anchor.getBoundingClientRect().top - top;
    }
    fn();
    if (anchor && anchor.isConnected) {
      const now = anchor.getBoundingClientRect().top - top;
      this.scroller.scrollTop += now - offset;
    }
  }

  trimTop() {
    while (this.end - this.start > MAX_NODES) {
      const m = this.msgs[this.start];
      const node = this.nodes.get(m.id);
      if (node) node.remove();
      this.nodes.delete(m.id);
      this.start += 1;
    }
  }

  trimBottom() {
    while (this.end - this.start > MAX_NODES) {
      const m = this.msgs[this.end - 1];
      const node = this.nodes.get(m.id);
      if (node) node.remove();
      this.nodes.delete(m.id);
      this.end -= 1;
    }
  }

  /** Grow the window upwards by up to CHUNK already-loaded messages. */
  growUp(count = CHUNK) {
    const newStart = Math.max(0, this.start - count);
    if (newStart === this.start) return false;
    this.withAnchor(() => {
      const frag = document.createDocumentFragment();
      for (let i = newStart; i < this.start; i++) frag.append(this.make(this.msgs[i]));
      this.list.prepend(frag);
      this.start = newStart;
      this.trimBottom();
    });
    return true;
  }

  /** Grow the window downwards by up to CHUNK already-loaded messages. */
  growDown() {
    const newEnd = Math.min(this.msgs.length, this.end + CHUNK);
    if (newEnd === this.end) return false;
    this.withAnchor(() => {
      const frag = document.createDocumentFragment();
      for (let i = this.end; i < newEnd; i++) frag.append(this.make(this.msgs[i]));
      this.list.append(frag);
      this.end = newEnd;
      this.trimTop();
    });
    return true;
  }

  async loadOlder() {
    if (this.loadingOlder || !this.hasMore || this.msgs.length === 0) return;
    this.loadingOlder = true;
    this.olderError = null;
    this.changed();
    const gen = this.generation;
    try {
      const page = await this.fetchOlder(this.msgs[0].id);
      if (gen !== this.generation) return;
      const older = (page.messages || []).filter((m) => m && m.id != null && !this.byId.has(m.id));
      for (const m of older) this.byId.set(m.id, m);
      this.msgs.unshift(...older);
      this.start += older.length;
      this.end += older.length;
      this.hasMore = Boolean(page.hasMore) && older.length > 0;
      this.loadingOlder = false;
      this.growUp();
    } catch (err) {
      if (gen !== this.generation) return;
      this.olderError = err;
      this.loadingOlder = false;
    }
    this.changed();
    // the user may still be at the top: keep going on the next frame
    this.onScroll();
  }

  async loadNewer() {
    if (this.loadingNewer || !this.hasNewer || this.msgs.length === 0) return;
    this.loadingNewer = true;
    this.newerError = null;
    const gen = this.generation;
    try {
      const page = await this.fetchNewer(this.msgs[this.msgs.length - 1].id);
      if (gen !== this.generation) return;
      const newer = (page.messages || []).filter((m) => m && m.id != null && !this.byId.has(m.id));
      for (const m of newer) this.pushData(m);
      this.hasNewer = Boolean(page.hasNewer) && newer.length > 0;
      this.loadingNewer = false;
      this.growDown();
    } catch (err) {
      if (gen !== this.generation) return;
      this.newerError = err;
      this.loadingNewer = false;
    }
    this.changed();
    this.onScroll();
  }

  onScroll() {
    if (this.raf) return;
    this.raf = requestAnimationFrame(() => {
      this.raf = 0;
      this.check();
    });
  }

  check() {
    if (this.settling) return;
    const sc = this.scroller;
    if (sc.scrollTop < EDGE_PX) {
      if (this.start > 0) this.growUp();
      else if (this.hasMore && !this.loadingOlder && !this.olderError) this.loadOlder();
    } else if (sc.scrollHeight - sc.scrollTop - sc.clientHeight < EDGE_PX) {
      if (this.end < this.msgs.length) this.growDown();
      else if (this.hasNewer && !this.loadingNewer && !this.newerError) this.loadNewer();
    }
    this.changed();
  }

  changed() {
    this.root.classList.toggle('detached', !this.atLatest);
    const sc = this.scroller;
    const farFromBottom = !this.atLatest || sc.scrollHeight - sc.scrollTop - sc.clientHeight > 400;
    this.onChange({
      empty: this.msgs.length === 0,
      loadingOlder: this.loadingOlder,
      olderError: this.olderError,
      hasMore: this.hasMore,
      atTop: this.start === 0,
      showJump: farFromBottom,
    });
  }
}
