// @ts-check
// The outbox: every message the user sends goes through it.
//
// An item is written to localStorage before the first attempt, carries a
// client uuid that the relay treats as an idempotency key (the rpc `id`), and
// leaves the outbox only when the relay has given a definitive answer. So a
// message typed while the relay is unreachable — or in flight when the page
// reloads or the connection drops — is sent again with the same id, and the
// relay stores it exactly once. Items are sent one at a time, in order.
//
// An item's files (images, text files, PDFs not yet uploaded) are kept in
// IndexedDB beside it, so that a message queued offline still has them after
// a reload; they are deleted when the item leaves the outbox.

import { store } from './util.js';

const KEY = 'loopchat.outbox.v1';
const DB_NAME = 'loopchat-outbox';
const FILES = 'files';

/** The outbox's IndexedDB (null where there is none, e.g. a private window that refuses it). */
function openDb() {
  return new Promise((resolve) => {
    let req;
    try {
      req = indexedDB.open(DB_NAME, 1);
    } catch {
      resolve(null);
      return;
    }
    req.onupgradeneeded = () => req.result.createObjectStore(FILES);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(null);
    req.onblocked = () => resolve(null);
  });
}

function request(db, mode, op) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(FILES, mode);
    const req = op(tx.objectStore(FILES));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export class Outbox {
  /**
   * @param {object} o
   * @param {(item: OutboxItem) => Promise<SendResult>} o.send  resolves once the relay accepted the item
   *        (or could not be reached, or refused it for good)
   * @param {() => void} o.onChange
   */
  constructor({ send, onChange }) {
    this.send = send;
    this.onChange = onChange;
    this.files = new Map(); // item id → File[] not yet uploaded (also in IndexedDB)
    this.db = openDb();
    this.inFlight = new Set();
    this.flushing = false;
    this.again = false;
    window.addEventListener('storage', (e) => {
      if (e.key === KEY) this.onChange();
    });
  }

  /** @returns {OutboxItem[]} */
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

  /**
   * Queue an item. Its files are written to IndexedDB first (awaited by
   * `flush` through `filesOf`), so a reload at any point finds them.
   */
  add(item, files) {
    const list = this.all();
    const withFiles = files && files.length;
    list.push(withFiles ? { ...item, fileCount: files.length } : item);
    this.save(list);
    if (withFiles) {
      this.files.set(item.id, files);
      this.stored = Promise.resolve(this.stored).then(() => this.keepFiles(item.id, files));
    }
    this.onChange();
  }

  async keepFiles(id, files) {
    const db = await this.db;
    if (!db) return;
    // Blobs are stored as they are; a File's name and type go beside it.
    const records = files.map((f) => ({ blob: f, name: f.name || '', type: f.type || '' }));
    try {
      await request(db, 'readwrite', (s) => s.put(records, id));
    } catch {
      /* quota or a closed database: the files stay in memory for this page */
    }
  }

  /** The files of an item: from memory, else (after a reload) from IndexedDB; null if gone. */
  async filesOf(item) {
    if (!item.fileCount) return [];
    await this.stored;
    const inMemory = this.files.get(item.id);
    if (inMemory) return inMemory;
    const db = await this.db;
    if (!db) return null;
    let records;
    try {
      records = await request(db, 'readonly', (s) => s.get(item.id));
    } catch {
      return null;
    }
    if (!Array.isArray(records) || records.length !== item.fileCount) return null;
    const files = records.map((r) => new File([r.blob], r.name, { type: r.type }));
    this.files.set(item.id, files);
    return files;
  }

  async forgetFiles(id) {
    await this.stored;
    const db = await this.db;
    if (!db) return;
    try {
      await request(db, 'readwrite', (s) => s.delete(id));
    } catch {
      /* left for the sweep in start() */
    }
  }

  /** Deletes stored files no queued item names (left by a tab closed mid-way). */
  async sweep() {
    const db = await this.db;
    if (!db) return;
    const keep = new Set(this.all().map((i) => i.id));
    try {
      const keys = await request(db, 'readonly', (s) => s.getAllKeys());
      for (const k of keys) if (!keep.has(k)) await request(db, 'readwrite', (s) => s.delete(k));
    } catch {
      /* next time */
    }
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
    const had = this.get(id);
    this.save(this.all().filter((i) => i.id !== id));
    this.files.delete(id);
    this.inFlight.delete(id);
    if (had && had.fileCount) this.forgetFiles(id);
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
