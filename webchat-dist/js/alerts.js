// Notifications ("alerts"): the bell, its unread count and the panel.
//
// Loaded once with GET /webchat/notifications, then kept live by the
// `notification` events of the event stream. Deduplicated by seq (the
// notification log's own sequence). What is read is one number in
// localStorage — the highest notification seq the user has marked read — so
// unread state survives reloads and is shared by every tab.

import { api } from './api.js';
import { el, relativeTime, store, relayPageUrl } from './util.js';

const READ_KEY = 'loopchat.notify.readSeq';
const KEEP = 200;

export class Alerts {
  constructor({ bell, count, panel, list, empty, markRead, onOpenSession, onUnread = () => {} }) {
    this.bell = bell;
    this.onUnread = onUnread;
    this.count = count;
    this.panel = panel;
    this.list = list;
    this.empty = empty;
    this.onOpenSession = onOpenSession;
    this.items = new Map(); // id (or seq) → latest notification
    this.maxSeq = 0;
    this.loaded = false;

    bell.addEventListener('click', (e) => {
      e.stopPropagation();
      this.toggle();
    });
    markRead.addEventListener('click', () => this.markAllRead());
    panel.addEventListener('click', (e) => e.stopPropagation());
    document.addEventListener('click', () => this.close());
    window.addEventListener('storage', (e) => {
      if (e.key === READ_KEY) this.render();
    });
    setInterval(() => { if (!panel.hidden) this.render(); }, 30000);
  }

  get readSeq() {
    return Number(store.get(READ_KEY, 0)) || 0;
  }

  async load() {
    try {
      const res = await api.notifications(0, 100);
      for (const n of res.notifications || []) this.add(n, { render: false });
      this.loaded = true;
    } catch {
      // no notifications endpoint yet, or offline: the event stream still delivers new ones
    }
    this.render();
  }

  /**
   * Add one notification; returns false for one already known. A notification
   * posted again with the same id (an update) replaces the earlier one.
   */
  add(n, { render = true } = {}) {
    const seq = Number(n && n.seq);
    if (!Number.isFinite(seq)) return false;
    const key = n.id != null ? `id:${n.id}` : `seq:${seq}`;
    const known = this.items.get(key);
    if (known && Number(known.seq) >= seq) return false;
    this.items.set(key, n);
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (this.items.size > KEEP) {
      const oldest = [...this.items.entries()].sort((a, b) => a[1].seq - b[1].seq).slice(0, this.items.size - KEEP);
      for (const [k] of oldest) this.items.delete(k);
    }
    if (render) this.render();
    return true;
  }

  unread() {
    const read = this.readSeq;
    let n = 0;
    for (const item of this.items.values()) if (item.seq > read) n += 1;
    return n;
  }

  markAllRead() {
    const max = Math.max(this.readSeq, this.maxSeq);
    store.set(READ_KEY, max);
    this.render();
  }

  toggle() {
    if (this.panel.hidden) this.open();
    else this.close();
  }

  open() {
    this.panel.hidden = false;
    this.bell.setAttribute('aria-expanded', 'true');
    this.render();
    const first = this.panel.querySelector('.alert-item') || this.panel.querySelector('button');
    if (first) first.focus();
  }

  close() {
    if (this.panel.hidden) return false;
    this.panel.hidden = true;
    this.bell.setAttribute('aria-expanded', 'false');
    return true;
  }

  activate(n) {
    // read up to this one
    if (n.seq > this.readSeq) store.set(READ_KEY, n.seq);
    this.close();
    this.render();
    if (n.session) {
      this.onOpenSession(n.session);
      return;
    }
    const href = n.click && relayPageUrl(n.click);
    if (href) window.open(href, '_blank', 'noopener,noreferrer');
  }

  render() {
    const unread = this.unread();
    this.count.hidden = unread === 0;
    this.count.textContent = unread > 99 ? '99+' : String(unread);
    this.bell.setAttribute('aria-label', unread ? `Notifications, ${unread} unread` : 'Notifications');
    this.onUnread(unread);
    if (this.panel.hidden) return;
    const read = this.readSeq;
    const sorted = [...this.items.values()].sort((a, b) => b.seq - a.seq);
    this.empty.hidden = sorted.length > 0;
    const now = Date.now();
    this.list.replaceChildren(...sorted.map((n) => {
      const prio = Math.min(5, Math.max(1, Number(n.priority) || 3));
      const when = n.timestamp ? new Date(n.timestamp) : null;
      const btn = el('button', {
        class: `alert-item prio-${prio}${n.seq > read ? ' unread' : ''}`,
        type: 'button',
        'data-seq': n.seq,
        title: n.session ? `Open session ${n.session}` : (n.click || ''),
      },
      el('span', { class: 'alert-title' },
        el('span', { text: n.title || '(no title)' }),
        when ? el('time', { class: 'alert-time', datetime: when.toISOString(), text: relativeTime(when, now) }) : null),
      n.body ? el('span', { class: 'alert-body', text: n.body }) : null,
      el('span', { class: 'sr-only', text: `priority ${prio}${n.seq > read ? ', unread' : ''}` }));
      btn.addEventListener('click', () => this.activate(n));
      return el('li', {}, btn);
    }));
  }
}
