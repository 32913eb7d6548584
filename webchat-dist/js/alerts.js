// @ts-check
// Notifications ("alerts"): the bell, its unread count, the panel, the
// detail view of one alert and the Checks panel.
//
// Loaded once with GET /webchat/notifications, then kept live by the
// `notification` events of the event stream. Read state lives in the relay:
// marking read (or dismissing, or asking the agent) makes the relay write a
// new version of the alert (same id, next seq) that every window and the
// shell receive, so all of them agree. A version with `dismissed` removes it.

import { api, loadAttachment } from './api.js';
import { el, relayPageUrl } from './util.js';
import { relativeTime, fullTime } from './time.js';
import { enhanceMarkdown } from './render.js';

const KEEP = 200;

const key = (n) => (n.id != null ? `id:${n.id}` : `seq:${n.seq}`);
// By time, not by string: stamps from other writers may trim their fraction.
const stampMs = (n) => Date.parse(n.timestamp || '') || 0;
const newestFirst = (a, b) => (stampMs(b) - stampMs(a) || b.seq - a.seq);

export class Alerts {
  /**
   * @param {object} o
   * @param {HTMLElement} o.bell
   * @param {HTMLElement} o.count
   * @param {HTMLElement} o.panel
   * @param {HTMLElement} o.list
   * @param {HTMLElement} o.empty
   * @param {HTMLElement} o.markRead
   * @param {(session: string) => void} o.onOpenSession
   * @param {(unread: number) => void} [o.onUnread]
   */
  constructor({ bell, count, panel, list, empty, markRead, onOpenSession, onUnread = () => {} }) {
    this.bell = bell;
    this.onUnread = onUnread;
    this.count = count;
    this.panel = panel;
    this.list = list;
    this.empty = empty;
    this.onOpenSession = onOpenSession;
    /** @type {Map<string, RelayNotification>} id (or seq) → latest notification */
    this.items = new Map();
    this.maxSeq = 0;
    this.loaded = false;
    this.detailId = null;
    this.detailGen = 0;
    const $ = (id) => document.getElementById(id);
    this.dlg = {
      root: /** @type {HTMLDialogElement} */ ($('alert-detail')), title: $('alert-detail-title'), meta: $('alert-detail-meta'),
      body: $('alert-detail-body'), image: /** @type {HTMLImageElement} */ ($('alert-detail-image')), check: $('alert-detail-check'),
      links: $('alert-detail-links'), error: $('alert-detail-error'), runAgain: /** @type {HTMLButtonElement} */ ($('alert-run-again')),
      ask: $('alert-ask'), dismiss: $('alert-dismiss'), close: $('alert-detail-close'),
    };
    this.checksPanel = $('checks-panel');
    this.checksList = $('checks-list');
    this.checksEmpty = $('checks-empty');

    bell.addEventListener('click', (e) => {
      e.stopPropagation();
      this.toggle();
    });
    markRead.addEventListener('click', () => this.markAllRead());
    panel.addEventListener('click', (e) => e.stopPropagation());
    document.addEventListener('click', () => this.close());
    $('show-checks').addEventListener('click', () => this.toggleChecks());
    this.dlg.close.addEventListener('click', () => this.closeDetail());
    this.dlg.root.addEventListener('close', () => { this.detailId = null; });
    this.dlg.dismiss.addEventListener('click', () => this.dismiss(this.detailId));
    this.dlg.ask.addEventListener('click', () => this.ask(this.detailId));
    this.dlg.runAgain.addEventListener('click', () => this.runAgain());
    setInterval(() => { if (!panel.hidden) this.render(); }, 30000);
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
   * Add one notification; returns false for one already known. A later
   * version with the same id (an update, read, dismissed) replaces it.
   */
  /**
   * @param {RelayNotification} n
   * @param {{render?: boolean}} [o]
   */
  add(n, { render = true } = {}) {
    const seq = Number(n && n.seq);
    if (!Number.isFinite(seq)) return false;
    const k = key(n);
    const known = this.items.get(k);
    if (known && Number(known.seq) >= seq) return false;
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (n.dismissed) {
      this.items.delete(k);
      if (this.detailId === n.id) this.closeDetail();
    } else {
      this.items.set(k, n);
      if (this.detailId === n.id && this.dlg.root.open) this.openDetail(n.id);
    }
    if (this.items.size > KEEP) {
      const oldest = [...this.items.entries()].sort((a, b) => a[1].seq - b[1].seq).slice(0, this.items.size - KEEP);
      for (const [old] of oldest) this.items.delete(old);
    }
    if (render) this.render();
    return !n.dismissed;
  }

  unread() {
    let n = 0;
    for (const item of this.items.values()) if (!item.read) n += 1;
    return n;
  }

  /** Marked here at once; the relay's read versions then reach every window. */
  markRead(ids) {
    const fresh = ids.filter((id) => {
      const n = this.items.get(`id:${id}`);
      if (!n || n.read) return false;
      this.items.set(`id:${id}`, { ...n, read: true });
      return true;
    });
    this.render();
    if (fresh.length) api.markRead({ ids: fresh }).catch(() => {});
  }

  markAllRead() {
    for (const [k, n] of this.items) if (!n.read) this.items.set(k, { ...n, read: true });
    this.render();
    api.markRead({ all: true }).catch(() => {});
  }

  toggle() {
    if (this.panel.hidden) this.open();
    else this.close();
  }

  open() {
    this.panel.hidden = false;
    this.bell.setAttribute('aria-expanded', 'true');
    this.render();
    const first = /** @type {HTMLElement | null} */ (this.panel.querySelector('.alert-item') || this.panel.querySelector('button'));
    if (first) first.focus();
  }

  close() {
    if (this.panel.hidden) return false;
    this.panel.hidden = true;
    this.bell.setAttribute('aria-expanded', 'false');
    return true;
  }

  activate(n) {
    this.markRead([n.id]);
    if (n.session) {
      this.close();
      this.onOpenSession(n.session);
      return;
    }
    const href = n.click && relayPageUrl(n.click);
    if (href) {
      this.close();
      window.open(href, '_blank', 'noopener,noreferrer');
      return;
    }
    this.openDetail(n.id);
  }

  async openDetail(id) {
    const d = this.dlg;
    // A close (or another open) while this one waits for the relay wins.
    const gen = ++this.detailGen;
    let res;
    try {
      res = await api.notification(id);
      if (gen !== this.detailGen) return;
    } catch (err) {
      if (gen !== this.detailGen) return;
      d.error.hidden = false;
      d.error.textContent = err.message;
      return;
    }
    const n = res.notification;
    this.detailId = n.id;
    this.markRead([n.id]);
    d.error.hidden = true;
    d.title.textContent = n.title || '(no title)';
    const when = n.timestamp ? new Date(n.timestamp) : null;
    const parts = [`priority ${n.priority}`];
    if (n.tags && n.tags.length) parts.push(`tags: ${n.tags.join(', ')}`);
    if (when) parts.push(fullTime(when));
    if (n.source) parts.push(`from ${n.source}`);
    d.meta.textContent = parts.join(' · ');
    d.body.innerHTML = res.bodyHtml; // sanitized by the relay (ammonia)
    enhanceMarkdown(d.body);
    d.image.hidden = !n.image;
    d.image.removeAttribute('src');
    if (n.image) loadAttachment(d.image, `notifications/${encodeURIComponent(n.id)}/image`);
    d.check.hidden = !n.check;
    d.runAgain.hidden = !n.check;
    if (n.check) {
      const c = n.check;
      d.check.replaceChildren(
        el('p', { class: 'alert-check-line', text: `Check ${c.name}: ${c.state} · exit ${c.exitCode ?? 'none (killed)'} · ${c.durationMs} ms` }),
        el('pre', { class: 'alert-check-output', text: c.output || '(no output)' }));
    }
    const links = [];
    const sessionLink = (label, session) => {
      const b = el('button', { class: 'link-btn', type: 'button', text: label });
      b.addEventListener('click', () => { this.closeDetail(); this.close(); this.onOpenSession(session); });
      return b;
    };
    if (n.session) links.push(sessionLink(`Open session ${n.session}`, n.session));
    if (n.investigatedIn) links.push(el('span', { class: 'alert-investigated' }, 'investigated in session ', sessionLink(n.investigatedIn, n.investigatedIn)));
    d.links.replaceChildren(...links);
    if (!d.root.open) d.root.showModal();
  }

  async dismiss(id) {
    if (!id) return;
    try {
      await api.dismiss(id);
      this.items.delete(`id:${id}`);
      this.render();
      this.closeDetail();
    } catch (err) {
      this.dlg.error.hidden = false;
      this.dlg.error.textContent = err.message;
    }
  }

  async ask(id) {
    if (!id) return;
    try {
      const res = await api.askAlert(id);
      this.closeDetail();
      this.close();
      this.onOpenSession(res.session);
    } catch (err) {
      this.dlg.error.hidden = false;
      this.dlg.error.textContent = err.message;
    }
  }

  async runAgain() {
    const n = this.items.get(`id:${this.detailId}`);
    const name = n && n.check && n.check.name;
    if (!name) return;
    this.dlg.runAgain.disabled = true;
    try {
      await api.runCheck(name);
      await this.openDetail(n.id);
    } catch (err) {
      this.dlg.error.hidden = false;
      this.dlg.error.textContent = err.message;
    } finally {
      this.dlg.runAgain.disabled = false;
    }
  }

  closeDetail() {
    // Now, not at the dialog's (asynchronous) close event: an update
    // arriving meanwhile must not reopen it.
    this.detailId = null;
    this.detailGen += 1;
    if (this.dlg.root.open) this.dlg.root.close();
  }

  toggleChecks() {
    this.checksPanel.hidden = !this.checksPanel.hidden;
    if (!this.checksPanel.hidden) this.loadChecks();
  }

  async loadChecks() {
    let res;
    try {
      res = await api.checks();
    } catch {
      return;
    }
    const checks = res.checks || [];
    this.checksEmpty.hidden = checks.length > 0;
    this.checksList.replaceChildren(...checks.map((c) => {
      const last = c.lastRun
        ? `last ${relativeTime(new Date(c.lastRun.startedAt))} (exit ${c.lastRun.exitCode ?? 'none'}, ${c.lastRun.durationMs} ms)`
        : 'never ran';
      const run = el('button', { class: 'btn btn-small check-run', type: 'button', text: c.running ? 'Running…' : 'Run' });
      run.disabled = c.running;
      run.addEventListener('click', async () => {
        run.disabled = true;
        run.textContent = 'Running…';
        try { await api.runCheck(c.name); } catch { /* shown by the next load */ }
        this.loadChecks();
      });
      return el('li', { class: `check-item check-${c.status}`, 'data-check': c.name },
        el('span', { class: 'check-name', text: c.name }),
        el('span', { class: 'check-status', text: c.status }),
        el('span', { class: 'check-when', text: `${c.schedule} · ${last}${c.nextRun ? ` · next ${new Date(c.nextRun).toLocaleTimeString()}` : ''}` }),
        run);
    }));
  }

  render() {
    const unread = this.unread();
    this.count.hidden = unread === 0;
    this.count.textContent = unread > 99 ? '99+' : String(unread);
    this.bell.setAttribute('aria-label', unread ? `Notifications, ${unread} unread` : 'Notifications');
    this.onUnread(unread);
    if (this.panel.hidden) return;
    const sorted = [...this.items.values()].sort(newestFirst);
    this.empty.hidden = sorted.length > 0;
    const now = Date.now();
    this.list.replaceChildren(...sorted.map((n) => {
      const prio = Math.min(5, Math.max(1, Number(n.priority) || 3));
      const when = n.timestamp ? new Date(n.timestamp) : null;
      const btn = el('button', {
        class: `alert-item prio-${prio}${n.read ? '' : ' unread'}`,
        type: 'button',
        'data-seq': n.seq,
        'data-id': n.id,
        title: n.session ? `Open session ${n.session}` : (n.click || 'Details'),
      },
      el('span', { class: 'alert-title' },
        el('span', { text: n.title || '(no title)' }),
        when ? el('time', { class: 'alert-time', datetime: when.toISOString(), text: relativeTime(when, now) }) : null),
      n.body ? el('span', { class: 'alert-body', text: n.body }) : null,
      el('span', { class: 'sr-only', text: `priority ${prio}${n.read ? '' : ', unread'}` }));
      btn.addEventListener('click', () => this.activate(n));
      const more = el('button', { class: 'alert-more', type: 'button', text: 'Details', 'aria-label': `Details of ${n.title || 'the alert'}` });
      more.addEventListener('click', () => this.openDetail(n.id));
      const dismiss = el('button', { class: 'alert-dismiss', type: 'button', text: '✕', 'aria-label': `Dismiss ${n.title || 'the alert'}` });
      dismiss.addEventListener('click', () => this.dismiss(n.id));
      return el('li', { class: 'alert-row' }, btn, el('span', { class: 'alert-row-actions' }, more, dismiss));
    }));
  }
}
