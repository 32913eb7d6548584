// @ts-check
// HTTP calls to the relay. All URLs are relative to the page (it lives at
// /webchat/ locally and at other ports behind SSH tunnels).
//
// Auth is `Authorization: Bearer` on every request, with the token boot.js
// took from the URL fragment (`#token=…`) and keeps in localStorage. Both
// are bound to this origin (scheme, host *and port*); a cookie would not be,
// and would go to every other server on 127.0.0.1. So nothing here relies on
// cookies, and requests send none.

const TOKEN_KEY = 'loopchat.token';

/** The token this page authenticates with, or null (read each time: another tab may have stored a newer one). */
export function token() {
  try {
    const t = localStorage.getItem(TOKEN_KEY);
    if (t) return t;
  } catch { /* storage disabled: boot.js kept it in memory */ }
  return /** @type {PageWindow} */ (globalThis).__loopchatMemoryToken || null;
}

/** The header that proves this page may talk to the relay. */
export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** The localStorage key of the token, for pages that watch it change. */
export const TOKEN_STORAGE_KEY = TOKEN_KEY;

let unauthorizedHandler = null;

/** Called once per refused request (401, or 403 for a notify-only token): the app shows "signed out". */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

/** Tell the app that the relay refused this page's token. */
export function reportUnauthorized(err) {
  if (unauthorizedHandler) unauthorizedHandler(err);
}

function refusesToken(err) {
  return err.status === 401 || (err.status === 403 && err.code === 'forbidden');
}

/** A failed call: `status` is 0 when the relay could not be reached at all. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = 'network', body = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
  }

  /** The relay was unreachable (as opposed to answering with an error). */
  get offline() {
    return this.status === 0;
  }
}

/**
 * @param {string} path
 * @param {Record<string, string | number | boolean | null | undefined>} [params]
 */
function url(path, params) {
  const u = new URL(path, document.baseURI);
  if (params) {
    for (const [k, v] of Object.entries(params)) {
      if (v != null) u.searchParams.set(k, String(v));
    }
  }
  return u.pathname + u.search;
}

/** The ApiError for a refused answer; a refused token is also reported to the app. */
export async function errorFrom(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const msg = (body && typeof body.error === 'string' && body.error)
    || (res.status === 401 ? 'Not authorized.' : `The relay answered ${res.status} ${res.statusText || ''}`.trim());
  const code = (body && body.code) || (res.status === 401 ? 'unauthorized' : `http_${res.status}`);
  const err = new ApiError(msg, { status: res.status, code, body });
  if (refusesToken(err)) reportUnauthorized(err);
  return err;
}

/**
 * @typedef {object} CallOptions
 * @property {Record<string, string | number | boolean | null | undefined>} [params]  the query
 * @property {unknown} [json]        a JSON body
 * @property {BodyInit} [body]       any other body
 * @property {Record<string, string>} [headers]
 * @property {AbortSignal} [signal]
 * @property {Promise<Response>} [pending]  the answer of a request already made (boot.js's /info)
 * @property {boolean} [keepalive]  outlive the page: a small change the user expects kept even if
 *                                  they reload at once (the page shows it before the relay has it)
 */

/**
 * One JSON call; rejects with an ApiError.
 * @param {string} method
 * @param {string} path
 * @param {CallOptions} [o]
 * @returns {Promise<any>} the relay's JSON answer (each `api` method names its shape)
 */
async function call(method, path, { params, json, body, headers = {}, signal, pending, keepalive = false } = {}) {
  /** @type {RequestInit & {headers: Record<string, string>}} */
  const init = { method, headers: { Accept: 'application/json', ...authHeaders(), ...headers }, signal, credentials: 'omit', cache: 'no-store', keepalive };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers['Content-Type'] = 'application/json';
  } else if (body !== undefined) {
    init.body = body;
  }
  let res;
  try {
    res = await (pending || fetch(url(path, params), init));
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError('The relay cannot be reached.', { status: 0, code: 'network' });
  }
  if (!res.ok) throw await errorFrom(res);
  let data;
  try {
    data = await res.json();
  } catch {
    throw new ApiError('The relay sent an answer that is not JSON.', { status: res.status, code: 'bad_response' });
  }
  if (data && data.ok === false) {
    throw new ApiError(data.error || 'The relay reported an error.', { status: res.status, code: data.code || 'error', body: data });
  }
  return data;
}

/** A session as a file (`GET export`): its bytes and the name the relay offers. */
export async function exportSession(session, format) {
  let res;
  try {
    res = await fetch(url('export', { session, format }), { headers: authHeaders(), credentials: 'omit', cache: 'no-store' });
  } catch {
    throw new ApiError('The relay cannot be reached.', { status: 0, code: 'network' });
  }
  if (!res.ok) throw await errorFrom(res);
  const named = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '');
  return { blob: await res.blob(), name: named ? named[1] : `${session}.${format}` };
}

/** The /info request boot.js started for this session at page load, once. */
function takeBootInfo(session, limit) {
  const page = /** @type {PageWindow} */ (globalThis);
  const boot = page.__loopchatBoot;
  if (!boot || boot.key !== session || boot.limit !== limit) return undefined;
  page.__loopchatBoot = null;
  return boot.response;
}

export const api = {
  /** @returns {Promise<Info>} */
  info: (session, limit) => call('GET', 'info', { params: { session, limit }, pending: takeBootInfo(session, limit) }),
  /** @returns {Promise<HistoryPage>} */
  history: (session, before, limit) => call('GET', 'history', { params: { session, before, limit } }),
  /** @returns {Promise<HistoryPage>} */
  historyTo: (session, leaf, limit) => call('GET', 'history', { params: { session, leaf, limit } }),
  /** @returns {Promise<HistoryPage>} */
  historyAround: (session, around, limit, leaf) => call('GET', 'history', { params: { session, around, leaf, limit } }),
  /** @returns {Promise<HistoryPage>} */
  historyAfter: (session, after, limit, leaf) => call('GET', 'history', { params: { session, after, leaf, limit } }),
  /** @returns {Promise<{hits: SearchHit[], complete: boolean}>} */
  search: (q, limit, session) => call('GET', 'search', { params: { q, limit, session } }),
  /** @returns {Promise<Tree>} */
  tree: (session) => call('GET', 'tree', { params: { session } }),
  /** @returns {Promise<{sessions: SessionSummary[]}>} */
  sessions: () => call('GET', 'sessions'),
  rename: (session, name) => call('POST', 'rename', { json: { session, name } }),
  archive: (session) => call('POST', 'archive', { json: { session } }),
  /** @returns {Promise<{sessions: ArchivedSession[]}>} */
  archived: () => call('GET', 'archived'),
  restore: (sessionId) => call('POST', 'restore', { json: { sessionId } }),
  purge: (sessionId) => call('POST', 'purge', { json: { sessionId } }),
  pin: (session, pinned) => call('POST', 'pin', { json: { session, pinned } }),
  /** @returns {Promise<{sessions: {key: string, sessionId: string, title: string, messages: number}[]}>} */
  importFile: (file, format = 'auto') => call('POST', 'import', {
    params: { format },
    body: file,
    headers: { 'Content-Type': 'application/octet-stream' },
  }),
  /** @returns {Promise<StatusResponse>} */
  status: () => call('GET', 'status'),
  abort: (session, runId) => call('POST', 'abort', { json: { session, runId: runId || undefined } }),
  approve: (session, callId, decision) => call('POST', 'approve', { json: { session, callId, decision } }),
  /** @returns {Promise<{notifications: RelayNotification[]}>} */
  notifications: (since, limit) => call('GET', 'notifications', { params: { since, limit } }),
  presence: (payload) => call('POST', 'presence', { json: payload }),
  notify: (payload) => call('POST', 'notify', { json: payload }),
  /** @returns {Promise<{notification: RelayNotification, bodyHtml: string}>} */
  notification: (id) => call('GET', `notifications/${encodeURIComponent(id)}`),
  markRead: (payload) => call('POST', 'notifications/read', { json: payload, keepalive: true }),
  dismiss: (id) => call('POST', `notifications/${encodeURIComponent(id)}/dismiss`, { json: {}, keepalive: true }),
  askAlert: (id, session) => call('POST', `notifications/${encodeURIComponent(id)}/ask`, { json: session ? { session } : {} }),
  /** @returns {Promise<{checks: Check[]}>} */
  checks: () => call('GET', 'checks'),
  runCheck: (name) => call('POST', `checks/${encodeURIComponent(name)}/run`),
  /** @returns {Promise<{id: string, url: string, mimeType: string, size: number}>} */
  uploadAttachment: (file, type) => call('POST', 'attachments', {
    body: file,
    headers: { 'Content-Type': type || file.type || 'application/octet-stream' },
  }),
  /** @returns {Promise<ModelsResponse>} */
  models: () => call('GET', 'models'),
};

/**
 * POST /webchat/rpc with `stream: true` and read the run's events as they
 * come. `onEvent` sees every event; the promise resolves with the final
 * `done` payload or rejects with an ApiError. A relay that answers plain
 * JSON (non-streaming) is handled the same way.
 */
/**
 * @param {RpcRequest} body
 * @param {{onEvent?: (ev: RpcEvent) => void, signal?: AbortSignal}} [o]
 * @returns {Promise<RpcDone>}
 */
export async function rpcStream(body, { onEvent, signal } = {}) {
  let res;
  try {
    res = await fetch(url('rpc'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream, application/json', ...authHeaders() },
      body: JSON.stringify({ ...body, stream: true }),
      credentials: 'omit',
      cache: 'no-store',
      signal,
    });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError('The relay cannot be reached.', { status: 0, code: 'network' });
  }
  if (!res.ok) throw await errorFrom(res);
  const type = res.headers.get('content-type') || '';
  if (!type.includes('text/event-stream')) {
    let data;
    try { data = await res.json(); } catch { throw new ApiError('The relay sent an answer that is not JSON.', { status: res.status, code: 'bad_response' }); }
    if (data.ok === false) throw new ApiError(data.error || 'The agent failed.', { status: res.status, code: data.code || 'error', body: data });
    return data;
  }
  /** @type {RpcDone | ApiError | null} */
  let final = null;
  const handleData = (data) => {
    /** @type {RpcEvent} */
    let ev;
    try { ev = JSON.parse(data); } catch { return; }
    if (ev.type === 'done') final = ev;
    else if (ev.type === 'error') {
      final = new ApiError(ev.error || 'The agent failed.', { status: res.status, code: ev.code || 'agent_error', body: ev });
    }
    if (onEvent) onEvent(ev);
  };
  try {
    await readEventStream(res.body, handleData);
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    if (!final) throw new ApiError('The connection to the relay was lost during the reply.', { status: 0, code: 'network' });
  }
  if (final instanceof ApiError) throw final;
  if (!final) throw new ApiError('The reply stream ended early.', { status: 0, code: 'network' });
  return final;
}

/**
 * Read a `text/event-stream` body to its end, calling `onData` with the
 * `data:` payload of each event (comments and other fields are skipped).
 * Rejects when the connection breaks.
 */
export async function readEventStream(body, onData) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  const block = (text) => {
    const data = text
      .split('\n')
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n');
    if (data) onData(data);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n?/g, '\n');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        block(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
  } finally {
    reader.releaseLock();
  }
  if (buf.trim()) block(buf);
}

/**
 * Show an attachment (`attachments/<id>`) in `img`. An <img src> cannot
 * carry the bearer header, so the bytes are fetched with it and shown from a
 * blob: URL (revoked once decoded). Content-addressed and `immutable`, so a
 * second fetch of the same image comes from the browser's cache.
 */
/** Save an attachment as a file under its name (fetched with the bearer, like images). */
export async function downloadAttachment(path, name) {
  const target = new URL(path, document.baseURI);
  if (target.origin !== location.origin) return;
  const res = await fetch(target.pathname + target.search, { headers: authHeaders(), credentials: 'omit' });
  if (!res.ok) {
    await errorFrom(res);
    return;
  }
  const objectUrl = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = objectUrl;
  a.download = name || target.pathname.split('/').pop();
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000);
}

export async function loadAttachment(img, path) {
  try {
    // The token goes to this origin only: a stored part's `url` is data, and
    // `//other-host/x` is relative too.
    const target = new URL(path, document.baseURI);
    if (target.origin !== location.origin) return;
    const res = await fetch(target.pathname + target.search, { headers: authHeaders(), credentials: 'omit' });
    if (!res.ok) {
      await errorFrom(res);
      return;
    }
    const blob = await res.blob();
    const objectUrl = URL.createObjectURL(blob);
    const done = () => URL.revokeObjectURL(objectUrl);
    img.addEventListener('load', done, { once: true });
    img.addEventListener('error', done, { once: true });
    img.src = objectUrl;
  } catch {
    /* offline: the image stays empty, its alt text says what it was */
  }
}
