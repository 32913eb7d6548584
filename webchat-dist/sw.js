// @ts-check
// The service worker: keeps the app shell (the page, its scripts, styles
// and icons) so the page opens while the relay is down, and nothing else.
//
// - Only same-origin GETs of the files listed in SHELL are answered here;
//   every other request (the API, the event stream, attachments) is not
//   touched and goes to the network as if there were no worker. So no API
//   answer, nothing sent with the bearer token, is ever stored by it.
// - The relay fills in VERSION (its version plus a hash of the bundle) and
//   SHELL when it serves this file. A new relay thus serves a different
//   worker, which the browser installs on the next load: it fills a new
//   cache named by the version, and deletes the older ones on activation.
// - Network first: while the relay answers, the files come from it (so the
//   page and its modules are always of one version, the relay's); the cache
//   answers only when the relay cannot be reached, and then every file comes
//   from the one cache of this worker's version.
// - Except a file named with `?v=` of this worker's version (in SHELL: the
//   page the relay serves loads its one script and its styles so): that
//   URL names exactly the content this worker cached, so the cache answers
//   it without asking the relay. A page of another version names another
//   `?v=`, which goes to the network; no mix of versions either way.
'use strict';

// The page's lib ("dom") has no service worker types: what this file uses of them.
/** @typedef {Event & {waitUntil(p: Promise<unknown>): void}} ExtendableEvent */
/** @typedef {ExtendableEvent & {request: Request, respondWith(r: Promise<Response>): void}} FetchEvent */
/**
 * @typedef {object} WorkerScope
 * @property {{scope: string}} registration
 * @property {() => Promise<void>} skipWaiting
 * @property {{claim(): Promise<void>}} clients
 * @property {(type: string, listener: (event: Event) => void) => void} addEventListener
 */
const worker = /** @type {WorkerScope} */ (/** @type {unknown} */ (self));

const VERSION = "__LOOPCHAT_SHELL_VERSION__";
const SHELL = ["__LOOPCHAT_SHELL_FILES__"];
const PREFIX = 'loopchat-shell-';
const CACHE = PREFIX + VERSION;

const scope = new URL(worker.registration.scope);
/** Absolute URLs of the shell files (no query but a `?v=` of this version). */
const shellUrls = new Set(SHELL.map((p) => new URL(p, scope).href));
const pageUrl = new URL('./', scope).href;
/** Absolute URLs (with their `?v=`) answered from the cache first. */
const versionedUrls = new Set(SHELL.filter((p) => p.includes('?v=')).map((p) => new URL(p, scope).href));

worker.addEventListener('install', (/** @type {ExtendableEvent} */ event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // credentials 'omit': nothing about the user is sent or kept; the shell
    // files are public (the relay serves them without a token).
    await cache.addAll(SHELL.map((p) => new Request(new URL(p, scope), { cache: 'no-cache', credentials: 'omit' })));
    await worker.skipWaiting();
  })());
});

worker.addEventListener('activate', (/** @type {ExtendableEvent} */ event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await worker.clients.claim();
  })());
});

/**
 * The cache key of a shell request, or null for anything else.
 * @param {Request} request
 */
function shellKey(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  if (url.origin !== scope.origin) return null;
  // the page is opened as /webchat/?session=…; /webchat/index.html is the same page
  if (request.mode === 'navigate' && (url.href.split('?')[0] === pageUrl || url.pathname === new URL('index.html', scope).pathname)) {
    return pageUrl;
  }
  if (versionedUrls.has(url.href)) return url.href;
  if (url.search) return null;
  return shellUrls.has(url.href) ? url.href : null;
}

worker.addEventListener('fetch', (/** @type {FetchEvent} */ event) => {
  const key = shellKey(event.request);
  if (!key) return; // not ours: the browser fetches it as usual
  event.respondWith((async () => {
    if (versionedUrls.has(key)) {
      const hit = await caches.match(key, { cacheName: CACHE });
      if (hit) return hit;
    }
    try {
      return await fetch(event.request);
    } catch (err) {
      const cache = await caches.open(CACHE);
      const hit = await cache.match(key);
      if (hit) return hit;
      throw err;
    }
  })());
});
