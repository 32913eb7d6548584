// @ts-check
// Small helpers shared by the modules: ids, storage, DOM, frames.

/** A random RFC 4122 v4 uuid (crypto.randomUUID is only in secure contexts). */
export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') {
    try { return crypto.randomUUID(); } catch { /* not a secure context */ }
  }
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A fresh session key: `chat-<time base36>-<random>`; valid per the protocol's key rule. */
export function newSessionKey() {
  const rand = Math.random().toString(36).slice(2, 8).padEnd(6, '0');
  return `chat-${Date.now().toString(36)}-${rand}`;
}

// The protocol's rule (proto's SESSION_KEY_PATTERN; a relay test keeps it equal).
export const SESSION_KEY_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * `el('div', {class: 'x', text: 'y'}, child…)`: text is set as textContent, never as HTML.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown>} [props]  attributes; `class`, `text`, `dataset` and `on…` handlers
 * @param {...(Node | string | number | null | undefined | false)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = String(v);
    else if (k === 'text') node.textContent = String(v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/**
 * localStorage that never throws (private mode, quota, disabled storage):
 * when it cannot be used, values live in memory for the life of the page.
 */
const memory = new Map();

/** Where the welcome tour is recorded as completed in a browser (`welcomeVersion:relayVersion`). */
export const WELCOME_DONE_KEY = 'loopchat.welcome.done';

export const store = {
  get(key, fallback = null) {
    let raw = null;
    try {
      raw = localStorage.getItem(key);
    } catch {
      raw = null;
    }
    if (raw == null && memory.has(key)) raw = memory.get(key);
    if (raw == null) return fallback;
    try {
      return JSON.parse(raw);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    const raw = JSON.stringify(value);
    try {
      localStorage.setItem(key, raw);
      memory.delete(key);
      return true;
    } catch {
      memory.set(key, raw);
      return false;
    }
  },
  remove(key) {
    memory.delete(key);
    try { localStorage.removeItem(key); } catch { /* ignore */ }
  },
};

/** The readable text of a message's content (string, or the text parts joined). */
export function contentText(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    // a file's text (Decision 82) is the model's to read; the page shows the file
    .filter((p) => p && p.type === 'text' && typeof p.text === 'string' && !p.attachment)
    .map((p) => p.text)
    .join('\n');
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * A notification's click as a URL, only if it is a page of this relay under
 * /webchat/. The relay accepts nothing else; this re-check is for a relay
 * that is older or not to be trusted. Resolved the way the browser would
 * follow it, so `..` and `//host` tricks are judged by where they land.
 */
export function relayPageUrl(raw) {
  try {
    const u = new URL(raw, location.href);
    return u.origin === location.origin && u.pathname.startsWith('/webchat/') ? u.href : null;
  } catch {
    return null;
  }
}

/**
 * Resolves once the browser has painted what was just put in the page and
 * had a frame's time to show it: work that can wait goes after the first
 * paint, not before it. The main thread paints in the first frame, but the
 * raster and the display of that paint run on other threads, and on two
 * cores work started right away delays them; so this waits for the start of
 * the frame after. A hidden page gets no frames: 150 ms at the latest.
 * @returns {Promise<void>}
 */
export function afterPaint() {
  return new Promise((resolve) => {
    const late = setTimeout(resolve, 150);
    requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(() => { clearTimeout(late); resolve(); }, 0)));
  });
}

/**
 * Runs `fn` when the page is idle (within `timeout` ms at the latest): for
 * work after the first paint that would otherwise compete with the frame's
 * raster for this machine's cores.
 * @param {() => void} fn
 */
export function whenIdle(fn, timeout = 500) {
  if (typeof requestIdleCallback === 'function') requestIdleCallback(() => fn(), { timeout });
  else setTimeout(fn, 50);
}
