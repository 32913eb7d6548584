// @ts-check
// The sidebar's session list (GET /webchat/sessions: pinned first, then
// newest), kept current by the `sessions` events every stream carries (no
// polling: the list is fetched once per stream connection), and the
// Archived view (GET /webchat/archived) with restore and purge.
//
// The last list is kept in localStorage (this origin only, like the outbox),
// so a page opened while the relay is down still shows it.

import { api } from './api.js';
import { el, store } from './util.js';
import { relativeTime } from './time.js';

const CACHE_KEY = 'loopchat.sessions.v1';

function byListOrder(a, b) {
  return (Number(!!b.pinned) - Number(!!a.pinned)) || ((b.updatedAt || 0) - (a.updatedAt || 0));
}

export class SessionList {
  /**
   * @param {object} o
   * @param {HTMLElement} o.list
   * @param {HTMLElement} o.status
   * @param {HTMLElement} [o.archivedToggle]
   * @param {(key: string) => void} o.onSelect
   * @param {() => void} [o.onChange]
   * @param {(key: string) => void} [o.onDeleted]
   */
  constructor({ list, status, archivedToggle, onSelect, onChange, onDeleted }) {
    this.list = list;
    this.status = status;
    this.archivedToggle = archivedToggle;
    this.onSelect = onSelect;
    this.onChange = onChange;
    this.onDeleted = onDeleted;
    const cached = store.get(CACHE_KEY, []);
    /** @type {SessionSummary[]} */
    this.sessions = Array.isArray(cached) ? cached : [];
    this.current = null;
    this.timer = 0;
    this.seq = 0;
    /** @type {ArchivedSession[] | null} The Archived view's rows while it is shown; null: the sessions. */
    this.archived = null;
    if (archivedToggle) archivedToggle.addEventListener('click', () => this.toggleArchived());
  }

  setCurrent(key) {
    this.current = key;
    this.render();
  }

  /** Refresh soon (coalesces bursts into one request). */
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
      this.sessions = (res.sessions || []).slice().sort(byListOrder);
      this.save();
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

  save() {
    store.set(CACHE_KEY, this.sessions.map((x) => ({ key: x.key, updatedAt: x.updatedAt, preview: x.preview, title: x.title, cwd: x.cwd, pinned: x.pinned })));
  }

  /** A `sessions` event: one row replaced or removed, or the whole list again. */
  /** @param {SessionsEvent} ev */
  apply(ev) {
    if (ev.change === 'resync' || !ev.key) {
      this.refresh();
      return;
    }
    // A fetch in flight answered before this change: its list is older.
    this.seq++;
    this.sessions = this.sessions.filter((s) => s.key !== ev.key);
    if (ev.change !== 'archived' && ev.session) this.sessions.push(ev.session);
    this.sessions.sort(byListOrder);
    this.save();
    if (this.archived && (ev.change === 'archived' || ev.change === 'restored')) this.loadArchived();
    this.render();
  }

  /** The session's name (pi's `session_info`), if it has one. */
  titleOf(key) {
    const s = this.sessions.find((x) => x.key === key);
    return (s && s.title) || null;
  }

  async toggleArchived() {
    if (this.archived) {
      this.archived = null;
      this.render();
      return;
    }
    this.archived = [];
    await this.loadArchived();
  }

  async loadArchived() {
    try {
      const res = await api.archived();
      if (!this.archived) return;
      this.archived = res.sessions || [];
      this.status.hidden = true;
    } catch (err) {
      this.status.hidden = false;
      this.status.textContent = `Could not load the archive: ${err.message}`;
    }
    this.render();
  }

  async act(what, fn) {
    try {
      await fn();
      this.status.hidden = true;
    } catch (err) {
      this.status.hidden = false;
      this.status.textContent = `Could not ${what}: ${err.message}`;
    }
  }

  render() {
    if (this.onChange) this.onChange();
    if (this.archivedToggle) {
      this.archivedToggle.textContent = this.archived ? '← Chats' : 'Archived';
      this.archivedToggle.setAttribute('aria-pressed', this.archived ? 'true' : 'false');
    }
    this.list.classList.toggle('archived-view', !!this.archived);
    if (this.archived) {
      this.renderArchived();
      return;
    }
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
      const li = el('li', { class: s.pinned ? 'session-row pinned' : 'session-row', 'data-key': s.key }, btn);
      if (!s.isNew) li.append(this.rowActions(s));
      return li;
    }));
  }

  rowActions(s) {
    const name = s.title || s.key;
    const pin = el('button', {
      class: 'session-act session-pin', type: 'button',
      title: s.pinned ? 'Unpin' : 'Pin to the top', 'aria-label': `${s.pinned ? 'Unpin' : 'Pin'} ${name}`,
      'aria-pressed': s.pinned ? 'true' : 'false', text: s.pinned ? '★' : '☆',
    });
    pin.addEventListener('click', () => this.act('pin', () => api.pin(s.key, !s.pinned)));
    const rename = el('button', {
      class: 'session-act session-rename', type: 'button', title: 'Rename', 'aria-label': `Rename ${name}`, text: '✎',
    });
    rename.addEventListener('click', () => {
      const title = window.prompt('Name this chat', s.title || '');
      if (title === null) return;
      this.act('rename', () => api.rename(s.key, title));
    });
    const del = el('button', {
      class: 'session-act session-delete', type: 'button',
      title: 'Delete (kept in Archived until purged)', 'aria-label': `Delete ${name}`, text: '🗑',
    });
    del.addEventListener('click', () => this.act('delete', async () => {
      await api.archive(s.key);
      if (this.onDeleted) this.onDeleted(s.key);
    }));
    return el('span', { class: 'session-actions' }, pin, rename, del);
  }

  renderArchived() {
    const now = Date.now();
    if (!this.archived.length) {
      this.list.replaceChildren(el('li', { class: 'archived-empty', text: 'No archived chats.' }));
      return;
    }
    this.list.replaceChildren(...this.archived.map((a) => {
      const name = a.title || a.key;
      const restore = el('button', { class: 'btn archived-restore', type: 'button', text: 'Restore', 'aria-label': `Restore ${name}` });
      restore.addEventListener('click', () => this.act('restore', async () => {
        await api.restore(a.sessionId);
        await this.loadArchived();
      }));
      const purge = el('button', { class: 'btn archived-purge', type: 'button', text: 'Delete forever', 'aria-label': `Delete ${name} forever` });
      purge.addEventListener('click', () => {
        if (!window.confirm(`Delete “${name}” for good? This cannot be undone.`)) return;
        this.act('purge', async () => {
          await api.purge(a.sessionId);
          await this.loadArchived();
        });
      });
      const when = el('span', { class: 'session-time', text: `deleted ${relativeTime(a.archivedAt, now)}` });
      return el('li', { class: 'archived-row', 'data-key': a.key, 'data-session-id': a.sessionId },
        el('span', { class: 'session-key' }, el('span', { class: 'session-name', text: name }), when),
        el('span', { class: 'archived-actions' }, restore, purge));
    }));
  }
}
