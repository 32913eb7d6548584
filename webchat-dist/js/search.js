// @ts-check
// Search across every session: the dialog behind Ctrl+K and the search
// button. The relay answers each hit with a snippet it escaped itself, whose
// only markup is <mark> (snippetHtml); everything else goes in as text.

import { api } from './api.js';
import { el } from './util.js';
import { shortTime, fullTime } from './time.js';

const WAIT_MS = 180; // typing pause before a query is sent
// After a session changes, or while the index catches up, the open
// dialog asks again: the index takes a turn in shortly after it is stored.
const REFRESH_MS = 400;
const CATCH_UP_MS = 1000;
const LIMIT = 30;

export class SearchDialog {
  /**
   * @param {object} o
   * @param {HTMLDialogElement} o.dialog
   * @param {HTMLInputElement} o.input
   * @param {HTMLElement} o.results  the listbox
   * @param {HTMLElement} o.status
   * @param {(hit: object) => void} o.onOpen  show this hit's message
   */
  constructor({ dialog, input, results, status, onOpen }) {
    this.dialog = dialog;
    this.input = input;
    this.results = results;
    this.status = status;
    this.onOpen = onOpen;
    this.hits = [];
    this.active = -1;
    this.timer = 0;
    this.seq = 0;
    this.returnFocus = null;
    input.addEventListener('input', () => this.schedule());
    input.addEventListener('keydown', (e) => this.onKey(e));
    dialog.addEventListener('close', () => {
      clearTimeout(this.timer);
      const back = this.returnFocus;
      this.returnFocus = null;
      if (back && back.isConnected) back.focus();
    });
    // A click on the backdrop (outside the box) closes it.
    dialog.addEventListener('click', (e) => { if (e.target === dialog) dialog.close(); });
  }

  get isOpen() {
    return this.dialog.open;
  }

  open() {
    if (this.dialog.open) {
      this.input.select();
      return;
    }
    this.returnFocus = /** @type {HTMLElement | null} */ (document.activeElement);
    this.dialog.showModal();
    this.input.focus();
    this.input.select();
    if (this.input.value.trim()) this.schedule(0);
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  /** A session changed: an open dialog with a query shows the new hits. */
  changed() {
    if (this.dialog.open && this.input.value.trim()) this.schedule(REFRESH_MS, true);
  }

  schedule(wait = WAIT_MS, keep = false) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(keep), wait);
  }

  /** @param {boolean} keep  the same query again: keep the chosen hit */
  async run(keep = false) {
    const q = this.input.value.trim();
    const seq = ++this.seq;
    if (!q) {
      this.show([], '');
      return;
    }
    this.status.textContent = 'Searching…';
    try {
      const r = await api.search(q, LIMIT);
      if (seq !== this.seq) return;
      const note = r.complete ? '' : ' (the index is still catching up)';
      const n = r.hits.length;
      const chosen = keep ? this.hits[this.active]?.messageId : undefined;
      this.show(r.hits, (n === 0 ? 'No match' : `${n}${n === LIMIT ? '+' : ''} ${n === 1 ? 'match' : 'matches'}`) + note, chosen);
      if (!r.complete && this.dialog.open) this.schedule(CATCH_UP_MS, true);
    } catch (err) {
      if (seq !== this.seq) return;
      this.show([], err.message || String(err));
    }
  }

  /** @param {string} [chosen]  the messageId to keep selected, if still a hit */
  show(hits, status, chosen) {
    this.hits = hits;
    this.status.textContent = status;
    this.active = -1;
    this.results.replaceChildren(...hits.map((hit, i) => this.option(hit, i)));
    this.input.setAttribute('aria-expanded', hits.length ? 'true' : 'false');
    const kept = chosen === undefined ? -1 : hits.findIndex((h) => h.messageId === chosen);
    this.select(kept >= 0 ? kept : hits.length ? 0 : -1);
  }

  option(hit, i) {
    const snippet = el('div', { class: 'search-hit-snippet' });
    // Escaped by the relay; <mark> is the only element it can hold.
    snippet.innerHTML = hit.snippetHtml;
    const when = new Date(hit.timestamp);
    const time = Number.isNaN(when.getTime()) ? '' : shortTime(when);
    const li = el('li', {
      class: 'search-hit',
      id: `search-hit-${i}`,
      role: 'option',
      'aria-selected': 'false',
      dataset: { session: hit.session, messageId: hit.messageId },
    },
    el('div', { class: 'search-hit-head' },
      el('span', { class: 'search-hit-session', text: hit.title || hit.session }),
      el('time', { datetime: hit.timestamp, title: time ? fullTime(when) : '', text: `${hit.role === 'user' ? 'You' : 'Agent'} · ${time}` })),
    snippet);
    li.addEventListener('click', () => this.choose(i));
    li.addEventListener('mousemove', () => { if (this.active !== i) this.select(i); });
    return li;
  }

  select(i) {
    const kids = this.results.children;
    if (this.active >= 0 && kids[this.active]) kids[this.active].setAttribute('aria-selected', 'false');
    this.active = i;
    if (i >= 0 && kids[i]) {
      kids[i].setAttribute('aria-selected', 'true');
      kids[i].scrollIntoView({ block: 'nearest' });
      this.input.setAttribute('aria-activedescendant', kids[i].id);
    } else {
      this.input.removeAttribute('aria-activedescendant');
    }
  }

  onKey(e) {
    const n = this.hits.length;
    if (e.key === 'ArrowDown' && n) {
      e.preventDefault();
      this.select((this.active + 1) % n);
    } else if (e.key === 'ArrowUp' && n) {
      e.preventDefault();
      this.select((this.active - 1 + n) % n);
    } else if (e.key === 'Home' && n && e.ctrlKey) {
      e.preventDefault();
      this.select(0);
    } else if (e.key === 'End' && n && e.ctrlKey) {
      e.preventDefault();
      this.select(n - 1);
    } else if (e.key === 'Escape') {
      // A search field spends its first Escape clearing itself; here
      // Escape closes the dialog whatever the field holds.
      e.preventDefault();
      this.close();
    } else if (e.key === 'Enter') {
      e.preventDefault();
      clearTimeout(this.timer);
      if (this.active >= 0) this.choose(this.active);
      else this.run();
    }
  }

  choose(i) {
    const hit = this.hits[i];
    if (!hit) return;
    // Focus goes to the message, not back where it was.
    this.returnFocus = null;
    this.close();
    this.onOpen(hit);
  }
}
