// @ts-check
// Tool calls as cards: one per `toolCall` block of an assistant message,
// kept up to date by the run's `tool.*` events and by the stored
// `toolResult` messages. Every string goes in as text.
//
// A card: name, status (waiting for approval, running, ok, error, denied,
// aborted), the call (the command for bash, a diff for edit, the new content
// for write, else the JSON), the approval buttons while it waits, the output
// as it streams, and the duration.

import { el, contentText } from './util.js';

const STATUS_TEXT = {
  pending: '',
  waiting: 'waiting for approval',
  running: 'running…',
  ok: 'ok',
  error: 'error',
  denied: 'denied',
  aborted: 'aborted',
};

let approver = null;

/** `fn(callId, decision)` answers an approval (set by the app). */
export function setApprover(fn) { approver = fn; }

function argsView(name, args) {
  if (args == null || typeof args !== 'object') {
    return el('pre', { class: 'tool-args', text: typeof args === 'string' ? args : '' });
  }
  if (name === 'bash' && typeof args.command === 'string') {
    return el('pre', { class: 'tool-args tool-command', text: `$ ${args.command}` });
  }
  if (name === 'edit' && typeof args.path === 'string') {
    const edits = Array.isArray(args.edits) ? args.edits : [{ oldText: args.oldText, newText: args.newText }];
    const diff = el('pre', { class: 'tool-args tool-diff' });
    diff.append(el('span', { class: 'diff-file', text: `${args.path}\n` }));
    for (const e of edits) {
      for (const line of String(e.oldText ?? '').split('\n')) diff.append(el('span', { class: 'diff-del', text: `-${line}\n` }));
      for (const line of String(e.newText ?? '').split('\n')) diff.append(el('span', { class: 'diff-add', text: `+${line}\n` }));
    }
    return diff;
  }
  if (name === 'write' && typeof args.path === 'string') {
    const diff = el('pre', { class: 'tool-args tool-diff' });
    diff.append(el('span', { class: 'diff-file', text: `${args.path} (whole file)\n` }));
    for (const line of String(args.content ?? '').split('\n')) diff.append(el('span', { class: 'diff-add', text: `+${line}\n` }));
    return diff;
  }
  let text;
  try { text = JSON.stringify(args, null, 2); } catch { text = String(args); }
  return el('pre', { class: 'tool-args', text });
}

/** The card for a stored `toolCall` block. */
export function toolCard(part) {
  const name = part.name || 'tool';
  const card = el('details', { class: 'tool-card', 'data-call-id': part.id || '', 'data-status': 'pending' });
  card.open = true;
  card.append(
    el('summary', {},
      el('span', { class: 'tool-name', text: name }),
      ' ',
      el('span', { class: 'tool-status', text: '' }),
      ' ',
      el('span', { class: 'tool-duration', text: '' })),
    argsView(name, part.arguments),
    el('div', { class: 'tool-approval', hidden: true }),
    el('pre', { class: 'tool-output', hidden: true }));
  return card;
}

/** @returns {HTMLElement[]} */
function cardsFor(callId) {
  if (!callId) return [];
  return [.../** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(`.tool-card[data-call-id="${CSS.escape(callId)}"]`))];
}

/** A part of a card (its output, its approval box…). */
function partOf(card, selector) {
  return /** @type {HTMLElement} */ (card.querySelector(selector));
}

function setStatus(card, status) {
  card.dataset.status = status;
  partOf(card, '.tool-status').textContent = STATUS_TEXT[status] ?? status;
}

function showApproval(card, callId) {
  const box = partOf(card, '.tool-approval');
  box.hidden = false;
  const answer = (decision) => async (e) => {
    e.preventDefault();
    for (const b of box.querySelectorAll('button')) b.disabled = true;
    try {
      await approver(callId, decision);
    } catch (err) {
      for (const b of box.querySelectorAll('button')) b.disabled = false;
      box.querySelector('.tool-approval-error').textContent = `Could not answer: ${err.message}`;
    }
  };
  box.replaceChildren(
    el('button', { class: 'btn btn-small tool-approve', type: 'button', text: 'Approve', onclick: answer('approve') }),
    el('button', { class: 'btn btn-small tool-deny', type: 'button', text: 'Deny', onclick: answer('deny') }),
    el('button', { class: 'btn btn-small tool-allow-session', type: 'button', text: 'Allow this tool for this session', onclick: answer('allowSession') }),
    el('span', { class: 'tool-approval-error', role: 'alert' }));
}

function hideApproval(card) {
  const box = partOf(card, '.tool-approval');
  box.hidden = true;
  box.replaceChildren();
}

/** Waiting calls from /webchat/info (a page opened while they wait). */
export function applyPending(list) {
  for (const p of list || []) {
    for (const card of cardsFor(p.callId)) {
      setStatus(card, 'waiting');
      showApproval(card, p.callId);
    }
  }
}

/**
 * A `tool.*` event of the session. Returns true when it was one.
 * @param {SessionEvent} ev
 */
export function handleToolEvent(ev) {
  if (typeof ev.type !== 'string' || !ev.type.startsWith('tool.')) return false;
  for (const card of cardsFor('callId' in ev ? ev.callId : undefined)) {
    switch (ev.type) {
      case 'tool.approval':
        setStatus(card, 'waiting');
        showApproval(card, ev.callId);
        break;
      case 'tool.approval.resolved':
        hideApproval(card);
        if (ev.decision === 'denied' || ev.decision === 'expired') setStatus(card, 'denied');
        else if (ev.decision === 'cancelled') setStatus(card, 'aborted');
        break;
      case 'tool.start': {
        setStatus(card, 'running');
        const out = partOf(card, '.tool-output');
        out.hidden = false;
        out.textContent = '';
        break;
      }
      case 'tool.update': {
        const out = partOf(card, '.tool-output');
        out.hidden = false;
        out.append(document.createTextNode(ev.text || ''));
        break;
      }
      case 'tool.end':
        hideApproval(card);
        setStatus(card, ev.status);
        card.dataset.ended = '1';
        if (typeof ev.durationMs === 'number') {
          partOf(card, '.tool-duration').textContent = ev.durationMs < 1000 ? `${ev.durationMs} ms` : `${(ev.durationMs / 1000).toFixed(1)} s`;
        }
        break;
      default:
        break;
    }
  }
  return true;
}

/** A stored `toolResult` message settles its card (history, reloads). */
export function applyResult(msg) {
  if (!msg || msg.role !== 'toolResult' || !msg.toolCallId) return;
  for (const card of cardsFor(msg.toolCallId)) {
    if (!card.dataset.ended) {
      const text = contentText(msg.content);
      const denied = /^(The user denied|No one approved|The tool .* is not allowed)/.test(text);
      setStatus(card, msg.isError ? (denied ? 'denied' : 'error') : 'ok');
    }
    hideApproval(card);
    const out = partOf(card, '.tool-output');
    out.hidden = false;
    out.textContent = contentText(msg.content);
  }
}

/**
 * Keeps cards in step with the transcript: each toolResult message that
 * appears settles the card of its call (the card is rendered first).
 */
export function watchTranscript(root, messageOf) {
  const sync = () => {
    for (const node of root.querySelectorAll('.msg.toolResult[data-id]:not([data-applied])')) {
      const msg = messageOf(node.dataset.id);
      if (msg) applyResult(msg);
      node.dataset.applied = '1';
    }
  };
  new MutationObserver(sync).observe(root, { childList: true, subtree: true });
  sync();
}
