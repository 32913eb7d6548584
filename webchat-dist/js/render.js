// @ts-check
// Building message elements. The only HTML ever parsed is the relay's
// sanitized markdown rendering (`message.html`); every other string — user
// text, streamed deltas, errors, thinking, tool output — goes in as text.

import { el, contentText, formatBytes } from './util.js';
import { shortTime, fullTime, timeFormatsReady } from './time.js';
import { loadAttachment, downloadAttachment } from './api.js';
import { toolCard } from './tools.js';

const LONG_TOOL_TEXT = 2000;

const ROLE_LABEL = { user: 'You', assistant: 'Assistant', system: 'System', toolResult: 'Tool result' };

function meta(role, timestamp) {
  const date = timestamp ? new Date(timestamp) : null;
  const time = date && !Number.isNaN(date.getTime())
    // the tooltip waits for the formatters when they are not made yet (time.js)
    ? el('time', { class: 'msg-time', datetime: date.toISOString(), title: timeFormatsReady() ? fullTime(date) : null, text: shortTime(date) })
    : null;
  return el('div', { class: 'msg-meta' }, el('span', { class: 'msg-role', text: ROLE_LABEL[role] || role }), time);
}

/** A collapsible block of thinking text (collapsed by default). */
export function thinkingBlock(text, open = false) {
  const details = el('details', { class: 'thinking-block' },
    el('summary', { text: 'Thinking' }),
    el('div', { class: 'thinking-text', text }));
  details.open = open;
  return details;
}

/**
 * Fetch relay images with the bearer and give code blocks a copy button. Links
 * are left as the relay's sanitizer wrote them (new tab, `noopener noreferrer
 * nofollow`): that rule lives in one place, relay/src/render.rs.
 */
export function enhanceMarkdown(root) {
  // An image of the relay itself (say an attachment) needs the bearer token
  // like any of its URLs; an <img src> cannot send it.
  for (const img of root.querySelectorAll('img[src]')) {
    const src = img.getAttribute('src');
    if (/^[a-z][a-z0-9+.-]*:/i.test(src) || src.startsWith('//')) continue;
    img.removeAttribute('src');
    img.dataset.attachment = src;
    loadAttachment(img, src);
  }
  for (const pre of root.querySelectorAll('pre')) {
    if (pre.parentElement && pre.parentElement.classList.contains('code-wrap')) continue;
    const wrap = el('div', { class: 'code-wrap' });
    pre.replaceWith(wrap);
    wrap.append(pre);
    const btn = el('button', { class: 'copy-btn', type: 'button', 'aria-label': 'Copy code', text: 'Copy' });
    btn.addEventListener('click', () => copyText(pre.textContent || '', btn));
    wrap.append(btn);
  }
}

async function copyText(text, btn) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // Fallback for contexts without the async clipboard.
    const ta = el('textarea', { class: 'sr-only', readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
  }
  btn.textContent = ok ? 'Copied' : 'Copy failed';
  setTimeout(() => { btn.textContent = 'Copy'; }, 1500);
}

function imageElement(part) {
  const src = part.url || (part.data && part.mimeType ? `data:${part.mimeType};base64,${part.data}` : null);
  if (!src) return null;
  const alt = part.name || 'attached image';
  if (/^(data|blob):/i.test(src)) return el('img', { src, alt, decoding: 'async' });
  // Only relative (same-origin) URLs besides those; the CSP blocks the rest anyway.
  if (/^[a-z][a-z0-9+.-]*:/i.test(src)) return null;
  // The relay's attachments need the bearer token, which an <img src> cannot send.
  const img = el('img', { alt, decoding: 'async', 'data-attachment': src });
  loadAttachment(img, src);
  return img;
}

/** A file attached to a message (its text went to the model): a download button. */
function fileElement(part) {
  const src = typeof part.url === 'string' ? part.url : '';
  if (!src || /^[a-z][a-z0-9+.-]*:/i.test(src)) return null;
  const name = typeof part.name === 'string' && part.name ? part.name : 'file';
  const size = Number(part.size) > 0 ? ` (${formatBytes(Number(part.size))})` : '';
  return el('button', {
    class: 'msg-file',
    type: 'button',
    text: `${name}${size}`,
    title: `Download ${name}`,
    'aria-label': `Download ${name}`,
    onclick: () => downloadAttachment(src, name),
  });
}

/**
 * A reply's generation figures (Decision 81): tokens, speed, time to first
 * token and context, from the server's counts or, said so, the relay's.
 */
export function statsElement(msg) {
  const s = msg.stats;
  if (!s || typeof s !== 'object') return null;
  const parts = [];
  const relay = s.source !== 'server';
  if (Number.isFinite(s.output)) parts.push(`${s.output} ${relay ? 'chunk' : 'token'}${s.output === 1 ? '' : 's'}`);
  if (Number.isFinite(s.tokensPerSec)) parts.push(`${s.tokensPerSec.toFixed(1)} ${relay ? 'chunks' : 'tok'}/s`);
  if (Number.isFinite(s.ttftMs)) parts.push(`first token ${(s.ttftMs / 1000).toFixed(2)} s`);
  if (Number.isFinite(s.contextTokens)) parts.push(`context ${s.contextTokens} tokens`);
  if (!parts.length && Number.isFinite(s.durationMs)) parts.push(`${(s.durationMs / 1000).toFixed(2)} s`);
  if (!parts.length) return null;
  const node = el('div', { class: 'msg-stats', text: parts.join(' · ') });
  node.dataset.source = relay ? 'relay' : 'server';
  node.title = relay
    ? 'The model server reported no token counts: these are the pieces of text the relay received, timed by the relay.'
    : 'Token counts reported by the model server; times measured by the relay.';
  return node;
}

/** A tool call in another agent's shape (`tool_use`), drawn as the same card. */
function toolBlock(part) {
  return toolCard({
    id: typeof part.id === 'string' ? part.id : '',
    name: part.name || part.toolName || 'tool',
    arguments: part.arguments ?? part.args ?? part.input ?? '',
  });
}

/**
 * The element for a stored message. `extra.runId` ties an assistant message
 * to its run (for the error note of a failed run).
 */
export function messageElement(msg, extra = {}) {
  const role = msg.role || 'assistant';
  const node = el('article', { class: `msg ${role}`, 'data-id': msg.id, 'aria-label': `${ROLE_LABEL[role] || role} message` });
  if (extra.runId) node.dataset.runId = extra.runId;
  node.append(meta(role, msg.timestamp));
  const body = el('div', { class: 'msg-body' });
  const parts = Array.isArray(msg.content) ? msg.content : null;
  const images = [];
  const files = [];

  if (parts) {
    for (const p of parts) {
      if (!p || typeof p !== 'object') continue;
      if (p.type === 'text' && p.attachment) { const f = fileElement(p); if (f) files.push(f); }
      else if (p.type === 'thinking' && typeof p.thinking === 'string' && p.thinking) body.append(thinkingBlock(p.thinking));
      else if (p.type === 'image') { const img = imageElement(p); if (img) images.push(img); }
      else if (p.type === 'toolCall') body.append(toolCard(p));
      else if (p.type === 'tool_use') body.append(toolBlock(p));
    }
  }

  if (role === 'assistant' && typeof msg.html === 'string') {
    const md = el('div', { class: 'markdown' });
    md.innerHTML = msg.html; // sanitized by the relay (ammonia)
    enhanceMarkdown(md);
    body.append(md);
  } else if (role === 'toolResult' || role === 'system') {
    // Tool output can be huge: collapsed behind its size when long (a closed
    // <details> costs no layout), shown in full when opened — never cut.
    const text = contentText(msg.content);
    if (text) {
      const long = text.length > LONG_TOOL_TEXT;
      const what = msg.kind === 'compaction' ? 'Compacted: the agent sees this summary instead of what came before'
        : msg.kind === 'branch_summary' ? 'Summary of the branch this conversation came back from'
          : role === 'system' ? 'System' : 'Tool output';
      const label = `${what} (${formatBytes(new Blob([text]).size)})`;
      if (msg.kind) node.classList.add('marker');
      const details = el('details', { class: 'tool-block' }, el('summary', { text: label }), el('pre', { text }));
      details.open = !long;
      body.append(details);
    }
  } else {
    const text = contentText(msg.content);
    if (text) body.append(el('div', { class: role === 'assistant' ? 'plain-text' : 'text', text }));
  }
  if (images.length) body.append(el('div', { class: 'msg-images' }, ...images));
  if (files.length) body.append(el('div', { class: 'msg-files' }, ...files));
  node.append(body);
  if (role === 'assistant') {
    const stats = statsElement(msg);
    if (stats) node.append(stats);
  }
  // Branches (pi's tree): editing a message or answering it again appends a
  // new child of the right entry; the old branch stays in the file.
  const actions = [];
  if (role === 'assistant' || role === 'user') {
    const copy = el('button', { class: 'msg-action copy-msg-btn', type: 'button', text: 'Copy', 'aria-label': 'Copy the message' });
    copy.addEventListener('click', () => copyText(contentText(msg.content), copy));
    actions.push(copy);
  }
  if (extra.onEdit) actions.push(el('button', { class: 'msg-action edit-btn', type: 'button', text: 'Edit', onclick: extra.onEdit }));
  if (extra.onRegenerate) actions.push(el('button', { class: 'msg-action regenerate-btn', type: 'button', text: 'Regenerate', onclick: extra.onRegenerate }));
  if (actions.length) node.append(el('div', { class: 'msg-actions' }, ...actions));

  if (msg.stopReason === 'aborted') {
    node.classList.add('stopped');
    node.append(el('div', { class: 'stopped-note', text: 'Stopped.' }));
  } else if (msg.stopReason === 'error' || extra.error) {
    markFailed(node, extra.error || 'The agent failed to answer.', extra.onRetry);
  }
  return node;
}

/** Turn a message or live bubble into a failed turn: one error note, one Retry. */
export function markFailed(node, errorText, onRetry) {
  node.classList.add('error');
  let note = node.querySelector('.error-note');
  if (!note) {
    note = el('div', { class: 'error-note', role: 'alert' });
    node.append(note);
  }
  note.textContent = errorText;
  if (onRetry && !node.querySelector('.retry-btn')) {
    node.append(el('div', { class: 'msg-actions' },
      el('button', { class: 'btn btn-small retry-btn', type: 'button', text: 'Retry', onclick: onRetry })));
  }
}

/** A streaming assistant reply: text grows via textContent only. */
export function liveElement(runId) {
  const node = el('article', { class: 'msg assistant live', 'data-run-id': runId, 'aria-label': 'Assistant reply in progress', 'aria-busy': 'true' });
  node.append(meta('assistant', new Date().toISOString()));
  const body = el('div', { class: 'msg-body' });
  const text = el('div', { class: 'stream-text' });
  body.append(text);
  node.append(body);
  return node;
}

/** A user message not yet stored by the relay (sending, queued offline or failed). */
export function pendingElement(item) {
  const node = el('article', { class: 'msg user pending', 'data-client-id': item.id, 'aria-label': 'Your message, not yet sent' });
  node.append(meta('user', item.createdAt));
  const body = el('div', { class: 'msg-body' });
  if (item.text) body.append(el('div', { class: 'text', text: item.text }));
  if (item.previews && item.previews.length) {
    body.append(el('div', { class: 'msg-images' }, ...item.previews.map((src) => el('img', { src, alt: 'attached image' }))));
  }
  // after a reload the previews (blob: URLs) are gone; the images' names stand for them
  const names = [...(item.previews && item.previews.length ? [] : item.imageNames || []), ...(item.fileNames || [])];
  if (names.length) {
    body.append(el('div', { class: 'msg-files' }, ...names.map((name) => el('span', { class: 'msg-file', text: name }))));
  }
  node.append(body);
  node.append(el('div', { class: 'msg-status', text: '' }));
  return node;
}
