// HTTP calls to the relay. All URLs are relative to the page (it lives at
// /webchat/ locally and at other ports behind SSH tunnels); auth is the
// HttpOnly cookie the relay set when the page was opened with ?token=.

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

function url(path, params) {
  const u = new URL(path, document.baseURI);
  if (params) {
    for (const [k, v] of Object.entries(params)) {
      if (v != null) u.searchParams.set(k, String(v));
    }
  }
  return u.pathname + u.search;
}

async function errorFrom(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const msg = (body && typeof body.error === 'string' && body.error)
    || (res.status === 401 ? 'Not authorized.' : `The relay answered ${res.status} ${res.statusText || ''}`.trim());
  const code = (body && body.code) || (res.status === 401 ? 'unauthorized' : `http_${res.status}`);
  return new ApiError(msg, { status: res.status, code, body });
}

async function call(method, path, { params, json, body, headers = {}, signal, pending } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, signal, credentials: 'same-origin', cache: 'no-store' };
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

/** The /info request boot.js started for this session at page load, once. */
function takeBootInfo(session, limit) {
  const boot = globalThis.__loopchatBoot;
  if (!boot || boot.key !== session || boot.limit !== limit) return undefined;
  globalThis.__loopchatBoot = null;
  return boot.response;
}

export const api = {
  info: (session, limit) => call('GET', 'info', { params: { session, limit }, pending: takeBootInfo(session, limit) }),
  history: (session, before, limit) => call('GET', 'history', { params: { session, before, limit } }),
  sessions: () => call('GET', 'sessions'),
  abort: (session, runId) => call('POST', 'abort', { json: { session, runId: runId || undefined } }),
  notifications: (since, limit) => call('GET', 'notifications', { params: { since, limit } }),
  presence: (payload) => call('POST', 'presence', { json: payload }),
  uploadAttachment: (file) => call('POST', 'attachments', {
    body: file,
    headers: { 'Content-Type': file.type || 'application/octet-stream' },
  }),
};

/**
 * POST /webchat/rpc with `stream: true` and read the run's events as they
 * come. `onEvent` sees every event; the promise resolves with the final
 * `done` payload or rejects with an ApiError. A relay that answers plain
 * JSON (non-streaming) is handled the same way.
 */
export async function rpcStream(body, { onEvent, signal } = {}) {
  let res;
  try {
    res = await fetch(url('rpc'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream, application/json' },
      body: JSON.stringify({ ...body, stream: true }),
      credentials: 'same-origin',
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
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let final = null;
  const handleBlock = (block) => {
    const data = block
      .split('\n')
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n');
    if (!data) return;
    let ev;
    try { ev = JSON.parse(data); } catch { return; }
    if (ev.type === 'done') final = ev;
    else if (ev.type === 'error') {
      final = new ApiError(ev.error || 'The agent failed.', { status: res.status, code: ev.code || 'agent_error', body: ev });
    }
    if (onEvent) onEvent(ev);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n?/g, '\n');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        handleBlock(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
    if (buf.trim()) handleBlock(buf);
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    if (!final) throw new ApiError('The connection to the relay was lost during the reply.', { status: 0, code: 'network' });
  }
  if (final instanceof ApiError) throw final;
  if (!final) throw new ApiError('The reply stream ended early.', { status: 0, code: 'network' });
  return final;
}
