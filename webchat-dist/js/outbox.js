// The outbox: every message the user sends goes through it.
//
// An item is written to localStorage before the first attempt, carries a
// client uuid that the relay treats as an idempotency key (the rpc `id`), and
// leaves the outbox only when the relay has given a definitive answer. So a
// message typed while the relay is unreachable — or in flight when the page
// reloads or the connection drops — is sent again with the same id, and the
// relay stores it exactly once. Items are sent one at a time, in order.

import { store } from './util.js';

const KEY = 'loopchat.outbox.v1';

export class Outbox {
  /**
   * @param {object} o
   * @param {(item) => Promise<'sent'|'offline'|'failed'>} o.send  resolves once the relay accepted the item
   *        (or could not be reached, or refused it for good)
   * @param {() => void} o.onChange
   */
  constructor({ send, onChange }) {
    this.send = send;
    this.onChange = onChange;
    this.files = new Map(); // item id → File[] not yet uploaded (memory only)
    this.inFlight = new Set();
    this.flushing = false;
    this.again = false;
    window.addEventListener('storage', (e) => {
      if (e.key === KEY) this.onChange();
    });
  }

  all() {
    const list = store.get(KEY, []);
    return Array.isArray(list) ? list : [];
  }

  save(list) {
    store.set(KEY, list);
  }

  forSession(session) {
    return this.all().filter((i) => i.session === session);
  }

  get(id) {
    return this.all().find((i) => i.id === id) || null;
  }

  add(item, files) {
    const list = this.all();
    list.push(item);
    this.save(list);
    if (files && files.length) this.files.set(item.id, files);
    this.onChange();
  }

  update(id, patch) {
    const list = this.all();
    const i = list.findIndex((x) => x.id === id);
    if (i < 0) return null;
    list[i] = { ...list[i], ...patch };
    this.save(list);
    this.onChange();
    return list[i];
  }

  remove(id) {
    this.save(this.all().filter((i) => i.id !== id));
    this.files.delete(id);
    this.inFlight.delete(id);
    this.onChange();
  }

  /** Send whatever is waiting, in order; stops at the first item that cannot reach the relay. */
  async flush() {
    if (this.flushing) {
      this.again = true;
      return;
    }
    this.flushing = true;
    try {
      do {
        this.again = false;
        for (const item of this.all()) {
          if (item.state === 'failed' || this.inFlight.has(item.id)) continue;
          this.inFlight.add(item.id);
          let result;
          try {
            result = await this.send(item);
          } catch {
            result = 'offline';
          }
          if (result !== 'sent') this.inFlight.delete(item.id);
          if (result === 'offline') return;
        }
      } while (this.again);
    } finally {
      this.flushing = false;
    }
  }

  /** The rpc for an item finished (answered, or refused): it may be sent again only by the user. */
  settle(id) {
    this.inFlight.delete(id);
  }
}
