#!/usr/bin/env node
// A development stand-in for `loopchat serve`, written from protocol.md, for
// working on webchat-dist/ while the Rust relay is not available. NOT what
// the tests run against (they use target/debug/loopchat); select it with
// LOOPCHAT_WEB_RELAY=mock only to debug the UI itself.
//
// Usage: node dev/mock-relay.mjs serve --home DIR --port N
// Env: LOOPCHAT_ECHO_DELAY_MS, LOOPCHAT_AGENT=command + LOOPCHAT_AGENT_COMMAND (always fails here).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const DIST = path.resolve(here, '../../../webchat-dist');
const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
const HOME = opt('--home', process.env.LOOPCHAT_HOME);
let PORT = Number(opt('--port', 0));
const DELAY = Number(process.env.LOOPCHAT_ECHO_DELAY_MS || 0);
const FAIL = process.env.LOOPCHAT_AGENT === 'command';

fs.mkdirSync(path.join(HOME, 'sessions'), { recursive: true });
const tokenFile = path.join(HOME, 'token');
if (!fs.existsSync(tokenFile)) fs.writeFileSync(tokenFile, crypto.randomBytes(32).toString('base64url'));
const TOKEN = fs.readFileSync(tokenFile, 'utf8').trim();
if (!PORT && fs.existsSync(path.join(HOME, 'last-port'))) PORT = Number(fs.readFileSync(path.join(HOME, 'last-port'), 'utf8'));

const indexFile = path.join(HOME, 'sessions', 'sessions.json');
const index = fs.existsSync(indexFile) ? JSON.parse(fs.readFileSync(indexFile, 'utf8')) : {};
const transcripts = new Map(); // key → messages
function messagesOf(key) {
  if (transcripts.has(key)) return transcripts.get(key);
  const e = index[key];
  const list = [];
  if (e) {
    const f = path.join(HOME, 'sessions', `${e.sessionId}.jsonl`);
    if (fs.existsSync(f)) {
      for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        try {
          const o = JSON.parse(line);
          if (o.type !== 'message') continue;
          const m = o.message ?? o;
          list.push(withHtml({ id: o.id, role: m.role, content: m.content, timestamp: o.timestamp, stopReason: m.stopReason }));
        } catch { /* torn */ }
      }
    }
  }
  transcripts.set(key, list);
  return list;
}
function persist(key, msg) {
  if (!index[key]) index[key] = { sessionId: crypto.randomUUID(), updatedAt: Date.now(), thinkingLevel: 'off' };
  index[key].updatedAt = Date.now();
  fs.writeFileSync(indexFile, JSON.stringify(index));
  const { html, ...rest } = msg;
  fs.appendFileSync(path.join(HOME, 'sessions', `${index[key].sessionId}.jsonl`),
    JSON.stringify({ type: 'message', id: msg.id, timestamp: msg.timestamp, message: { role: rest.role, content: rest.content, stopReason: rest.stopReason } }) + '\n');
}
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
function md(text) {
  // tiny markdown: fences, tables, bold, code, links; everything escaped
  const out = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.startsWith('```')) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith('```'); i++) code.push(lines[i]);
      out.push(`<pre><code>${esc(code.join('\n'))}\n</code></pre>`);
    } else if (l.startsWith('|') && lines[i + 1] && /^\|[-| ]+\|$/.test(lines[i + 1])) {
      const row = (r, t) => '<tr>' + r.split('|').slice(1, -1).map((c) => `<${t}>${inline(c.trim())}</${t}>`).join('') + '</tr>';
      let h = `<table><thead>${row(l, 'th')}</thead><tbody>`;
      for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) h += row(lines[i], 'td');
      i--;
      out.push(h + '</tbody></table>');
    } else if (l.trim()) out.push(`<p>${inline(l)}</p>`);
  }
  return out.join('\n');
}
function inline(s) {
  return esc(s).replace(/\*\*(.+?)\*\*/g, '<strong>$1</strong>').replace(/`(.+?)`/g, '<code>$1</code>')
    .replace(/\[(.+?)\]\((https?:[^)]+)\)/g, '<a href="$2" rel="noopener noreferrer">$1</a>');
}
function withHtml(m) {
  if (m.role === 'assistant') {
    const t = typeof m.content === 'string' ? m.content : (m.content || []).filter((p) => p.type === 'text').map((p) => p.text).join('\n');
    m.html = md(t);
  }
  return m;
}

// ---- events
let seqBase = Date.now() % 100000; // not starting at 1, grows across restarts
const logs = new Map(); // key → {events:[], subs:Set}
function log(key) {
  if (!logs.has(key)) logs.set(key, { events: [], subs: new Set(), seq: seqBase, base: seqBase, active: null });
  return logs.get(key);
}
function emit(key, body) {
  const l = log(key);
  const ev = { seq: ++l.seq, ...body };
  l.events.push(ev);
  for (const s of l.subs) s(ev);
  return ev;
}
const notifications = [];
const notifySubs = new Set();
let nseq = 0;
const nfile = path.join(HOME, 'notifications.json');
if (fs.existsSync(nfile)) { notifications.push(...JSON.parse(fs.readFileSync(nfile, 'utf8'))); nseq = notifications.at(-1)?.seq || 0; }

const idem = new Map(); // rpc id → promise of result
const queues = new Map();
async function runTurn(key, text, attachments, runCtl) {
  const msgs = messagesOf(key);
  const content = attachments.length ? [{ type: 'text', text }, ...attachments.map((a) => ({ type: 'image', mimeType: a.mimeType, url: `attachments/${a.id}` }))] : text;
  const user = { id: crypto.randomUUID(), role: 'user', content, timestamp: new Date().toISOString() };
  msgs.push(user); persist(key, user);
  const runId = crypto.randomUUID();
  runCtl.runId = runId;
  emit(key, { type: 'message', message: user, runId });
  const start = emit(key, { type: 'run.start', runId });
  log(key).active = { runId, startSeq: start.seq, ctl: runCtl };
  let out = '';
  let state = 'final'; let error;
  if (FAIL) {
    state = 'error'; error = 'the agent command failed (exit status 3): boom';
  } else {
    const words = `echo: ${text}`.split(/(?<=\s)/);
    for (const w of words) {
      if (runCtl.aborted) { state = 'aborted'; break; }
      if (DELAY) await new Promise((r) => setTimeout(r, DELAY));
      if (runCtl.aborted) { state = 'aborted'; break; }
      out += w;
      emit(key, { type: 'delta', runId, text: w });
    }
  }
  let reply = null;
  if (state !== 'error') {
    reply = withHtml({ id: crypto.randomUUID(), role: 'assistant', content: [{ type: 'text', text: out }], timestamp: new Date().toISOString(), ...(state === 'aborted' ? { stopReason: 'aborted' } : {}) });
    msgs.push(reply); persist(key, reply);
    emit(key, { type: 'message', message: reply, runId });
  }
  emit(key, { type: 'run.end', runId, state, ...(error ? { error } : {}) });
  log(key).active = null;
  if (state === 'error') { const e = new Error(error); e.code = 'agent_error'; e.status = 502; throw e; }
  return { ok: true, sessionKey: key, sessionId: index[key].sessionId, runId, payloads: [{ text: out, html: reply.html }], message: reply };
}

const CSP = "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };
const json = (res, status, obj) => { res.writeHead(status, { 'Content-Type': 'application/json' }); res.end(JSON.stringify(obj)); };
const err = (res, status, code, error) => json(res, status, { ok: false, error, code });
const body = (req) => new Promise((resolve) => { const c = []; req.on('data', (d) => c.push(d)); req.on('end', () => resolve(Buffer.concat(c))); });
const attachmentsDir = path.join(HOME, 'attachments');
fs.mkdirSync(attachmentsDir, { recursive: true });
const sockets = new Set();

const server = http.createServer(async (req, res) => {
  const u = new URL(req.url, 'http://x');
  const p = u.pathname;
  if (p === '/webchat') { res.writeHead(302, { Location: '/webchat/' + u.search }); return res.end(); }
  if (p === '/webchat/' && u.searchParams.has('token')) {
    const t = u.searchParams.get('token');
    u.searchParams.delete('token');
    // Legacy link: the token moves into the fragment; no cookie (docs/protocol.md).
    res.writeHead(302, { Location: u.pathname + u.search + (t === TOKEN ? `#token=${t}` : '') }); return res.end();
  }
  const staticName = p === '/webchat/' ? 'index.html' : p.startsWith('/webchat/') ? p.slice(9) : null;
  if (req.method === 'GET' && staticName && /^[\w./-]+\.(html|js|css|svg)$/.test(staticName) && !staticName.includes('..')) {
    const f = path.join(DIST, staticName);
    if (fs.existsSync(f)) {
      res.writeHead(200, { 'Content-Type': TYPES[path.extname(f)], 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache' });
      return res.end(fs.readFileSync(f));
    }
  }
  if (p === '/healthz') return json(res, 200, { ok: true, version: '0.0.0-mock' });
  const authed = req.headers.authorization === `Bearer ${TOKEN}`;
  if (!authed) return err(res, 401, 'unauthorized', 'A valid token is required.');
  const key = u.searchParams.get('session') || 'main';
  try {
    if (p === '/webchat/info') {
      const msgs = messagesOf(key); const limit = Number(u.searchParams.get('limit') || 100);
      const l = log(key);
      return json(res, 200, { ok: true, baseUrl: `http://127.0.0.1:${PORT}/webchat/`, port: PORT, token: TOKEN, basePath: '/webchat/', version: '0.0.0-mock', sessionKey: key, sessionId: index[key]?.sessionId ?? null, thinkingLevel: index[key]?.thinkingLevel || 'off', agent: { backend: FAIL ? 'command' : 'echo', model: null }, initialMessages: msgs.slice(-limit), hasMore: msgs.length > limit, lastSeq: l.seq, ...(l.active ? { activeRun: { runId: l.active.runId, startSeq: l.active.startSeq } } : {}) });
    }
    if (p === '/webchat/history') {
      const msgs = messagesOf(key); const limit = Number(u.searchParams.get('limit') || 100);
      const i = msgs.findIndex((m) => m.id === u.searchParams.get('before'));
      if (i < 0) return err(res, 404, 'not_found', 'No such message.');
      return json(res, 200, { ok: true, messages: msgs.slice(Math.max(0, i - limit), i), hasMore: i - limit > 0 });
    }
    if (p === '/webchat/sessions') {
      const list = Object.entries(index).map(([k, e]) => { const m = messagesOf(k); const last = m.at(-1); const t = last ? (typeof last.content === 'string' ? last.content : last.content.filter((x) => x.type === 'text').map((x) => x.text).join(' ')) : null; return { key: k, sessionId: e.sessionId, updatedAt: e.updatedAt, thinkingLevel: e.thinkingLevel || 'off', preview: t && t.slice(0, 100) }; }).sort((a, b) => b.updatedAt - a.updatedAt);
      return json(res, 200, { ok: true, sessions: list });
    }
    if (p === '/webchat/events') {
      const since = Number(u.searchParams.get('since') || req.headers['last-event-id'] || 0);
      const notifySince = u.searchParams.get('notifySince');
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      const l = log(key);
      const send = (ev) => res.write(`id: ${ev.seq}\ndata: ${JSON.stringify(ev)}\n\n`);
      const sendN = (n) => res.write(`data: ${JSON.stringify({ type: 'notification', seq: n.seq, notification: n })}\n\n`);
      if (since && (since > l.seq || since < l.base)) res.write(`data: ${JSON.stringify({ type: 'reset', seq: l.seq })}\n\n`);
      else for (const ev of l.events) if (ev.seq > since) send(ev);
      if (notifySince != null) for (const n of notifications) if (n.seq > Number(notifySince)) sendN(n);
      l.subs.add(send); notifySubs.add(sendN);
      req.on('close', () => { l.subs.delete(send); notifySubs.delete(sendN); });
      return;
    }
    if (p === '/webchat/rpc' && req.method === 'POST') {
      const b = JSON.parse((await body(req)).toString() || '{}');
      const sk = b.session || 'main';
      if (!b.text || !b.text.trim()) return err(res, 400, 'empty_text', 'The message is empty.');
      const stream = b.stream === true;
      let entry = b.id && idem.get(b.id);
      if (!entry) {
        const ctl = { aborted: false };
        const prev = queues.get(sk) || Promise.resolve();
        const attachments = (b.attachments || []).map((a) => ({ id: a.id, mimeType: JSON.parse(fs.readFileSync(path.join(attachmentsDir, `${a.id}.json`), 'utf8')).mimeType }));
        const promise = prev.catch(() => {}).then(() => runTurn(sk, b.text, attachments, ctl));
        queues.set(sk, promise);
        entry = { promise, ctl };
        if (b.id) idem.set(b.id, entry);
      }
      if (!stream) {
        try { return json(res, 200, await entry.promise); } catch (e) { return err(res, e.status || 500, e.code || 'internal', e.message); }
      }
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      const l = log(sk);
      let startSeq = l.seq;
      const fwd = (ev) => { if (!entry.ctl.runId || ev.runId === entry.ctl.runId) res.write(`data: ${JSON.stringify(ev)}\n\n`); };
      l.subs.add(fwd);
      try { const r = await entry.promise; res.write(`data: ${JSON.stringify({ type: 'done', ...r })}\n\n`); } catch (e) { res.write(`data: ${JSON.stringify({ type: 'error', ok: false, error: e.message, code: e.code || 'internal' })}\n\n`); }
      l.subs.delete(fwd);
      void startSeq;
      return res.end();
    }
    if (p === '/webchat/abort' && req.method === 'POST') {
      const b = JSON.parse((await body(req)).toString() || '{}');
      const a = log(b.session || 'main').active;
      if (a) a.ctl.aborted = true;
      return json(res, 200, { ok: true, runId: a ? a.runId : null });
    }
    if (p === '/webchat/attachments' && req.method === 'POST') {
      const data = await body(req);
      if (data.length > 10 * 1024 * 1024) return err(res, 413, 'payload_too_large', 'Attachment too large.');
      const id = crypto.randomUUID();
      fs.writeFileSync(path.join(attachmentsDir, id), data);
      fs.writeFileSync(path.join(attachmentsDir, `${id}.json`), JSON.stringify({ mimeType: req.headers['content-type'] }));
      return json(res, 200, { ok: true, id, url: `attachments/${id}`, mimeType: req.headers['content-type'], size: data.length });
    }
    if (p.startsWith('/webchat/attachments/')) {
      const id = p.slice(21).replace(/[^\w-]/g, '');
      const meta = JSON.parse(fs.readFileSync(path.join(attachmentsDir, `${id}.json`), 'utf8'));
      res.writeHead(200, { 'Content-Type': meta.mimeType });
      return res.end(fs.readFileSync(path.join(attachmentsDir, id)));
    }
    if (p === '/webchat/notify' && req.method === 'POST') {
      const b = JSON.parse((await body(req)).toString() || '{}');
      const n = { id: b.id || crypto.randomUUID(), seq: ++nseq, title: b.title, body: b.body, priority: b.priority || 3, tags: b.tags || [], click: b.click ?? null, session: b.session ?? null, timestamp: new Date().toISOString() };
      notifications.push(n); fs.writeFileSync(nfile, JSON.stringify(notifications));
      for (const s of notifySubs) s(n);
      return json(res, 200, { ok: true, id: n.id, seq: n.seq });
    }
    if (p === '/webchat/notifications') {
      const since = Number(u.searchParams.get('since') || 0);
      return json(res, 200, { ok: true, notifications: notifications.filter((n) => n.seq > since).slice(-Number(u.searchParams.get('limit') || 100)) });
    }
    if (p === '/webchat/presence' && req.method === 'POST') { await body(req); return json(res, 200, { ok: true }); }
    return err(res, 404, 'not_found', 'Not found.');
  } catch (e) {
    return err(res, 500, 'internal', String(e));
  }
});
server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
server.listen(PORT, '127.0.0.1', () => {
  PORT = server.address().port;
  fs.writeFileSync(path.join(HOME, 'last-port'), String(PORT));
  const d = { version: 1, pid: process.pid, port: PORT, baseUrl: `http://127.0.0.1:${PORT}/webchat/`, token: TOKEN, startedAt: new Date().toISOString(), store: indexFile };
  fs.writeFileSync(path.join(HOME, 'relay.json.tmp'), JSON.stringify(d));
  fs.renameSync(path.join(HOME, 'relay.json.tmp'), path.join(HOME, 'relay.json'));
  console.log(`http://127.0.0.1:${PORT}/webchat/#token=${TOKEN}`);
});
const stop = () => { try { fs.unlinkSync(path.join(HOME, 'relay.json')); } catch {} for (const s of sockets) s.destroy(); server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 500); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
