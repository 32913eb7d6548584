// The sidebar's session list (GET /webchat/sessions, newest first).
//
// The last list is kept in localStorage (this origin only, like the outbox),
// so a page opened while the relay is down still shows it.

import { api } from './api.js';
import { el, relativeTime, store } from './util.js';

const CACHE_KEY = 'loopchat.sessions.v1';

export class SessionList {
  constructor({ list, status, onSelect, onChange }) {
    this.list = list;
    this.status = status;
    this.onSelect = onSelect;
    this.onChange = onChange;
    const cached = store.get(CACHE_KEY, []);
    this.sessions = Array.isArray(cached) ? cached : [];
    this.current = null;
    this.timer = 0;
    this.seq = 0;
  }

  setCurrent(key) {
    this.current = key;
    this.render();
  }

  /** Refresh soon (coalesces bursts of messages into one request). */
  refreshSoon(delay = 400) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  async refresh() {
    clearTimeout(this.timer);
    const mine = ++this.seq;
    try {
      const res = await api.sessions();
      if (mine !== this.seq) return;
      this.sessions = (res.sessions || []).slice().sort((a, b) => (b.updatedAt || 0) - (a.updatedAt || 0));
      store.set(CACHE_KEY, this.sessions.map((x) => ({ key: x.key, updatedAt: x.updatedAt, preview: x.preview, title: x.title, cwd: x.cwd })));
      this.status.hidden = true;
    } catch (err) {
      if (mine !== this.seq) return;
      this.status.hidden = false;
      this.status.textContent = err.offline
        ? (this.sessions.length ? 'Offline: the list as last seen.' : 'Sessions unavailable while offline.')
        : `Could not load sessions: ${err.message}`;
    }
    this.render();
  }

  /** The session's name (pi's `session_info`), if it has one. */
  titleOf(key) {
    const s = this.sessions.find((x) => x.key === key);
    return (s && s.title) || null;
  }

  render() {
    if (this.onChange) this.onChange();
    const rows = this.sessions.slice();
    if (this.current && !rows.some((s) => s.key === this.current)) {
      rows.unshift({ key: this.current, updatedAt: null, preview: null, isNew: true });
    }
    const now = Date.now();
    this.list.replaceChildren(...rows.map((s) => {
      const btn = el('button', { class: 'session-item', type: 'button', 'data-key': s.key },
        el('span', { class: 'session-key' },
          el('span', { class: 'session-name', text: s.title || s.key }),
          s.updatedAt ? el('span', { class: 'session-time', text: relativeTime(s.updatedAt, now) }) : null),
        el('span', { class: 'session-preview', text: s.isNew ? 'New chat' : (s.preview || '') }));
      // Where the session was started, as pi and OpenClaw show it.
      if (s.cwd) btn.setAttribute('title', s.cwd);
      if (s.key === this.current) btn.setAttribute('aria-current', 'page');
      btn.addEventListener('click', () => this.onSelect(s.key));
      return el('li', {}, btn);
    }));
  }
}
