// Tool cards: one collapsible card per tool call, shared by every agent
// that runs tools (pi's tool executions, the relay's own tool loop).
//
// A card is keyed by the call id. Its live state comes from the session's
// `tool.args` (the call as the model writes it) / `tool.start` / `tool.update`
// / `tool.end` events; the stored assistant
// message that holds the call (a `toolCall` part) renders the same card, so
// a card drawn while the call streams and the one drawn from the transcript
// show the same thing. Every string goes in as text, never as HTML.

import { el } from './util.js';

/** Live state per call id: {name, args, status, output, startedAt, endedAt}. */
const states = new Map();
const MAX_STATES = 500;

const STATUS_LABEL = {
  calling: 'calling',
  waiting: 'waiting for approval',
  running: 'running',
  ok: 'ok',
  error: 'error',
  denied: 'denied',
};

function argsText(args) {
  if (args == null) return '';
  if (typeof args === 'string') return args;
  try { return JSON.stringify(args, null, 2); } catch { return String(args); }
}

function duration(st) {
  if (!st || !st.startedAt) return '';
  const ms = (st.endedAt || Date.now()) - st.startedAt;
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Draws `st` into a card. */
function paint(card, st) {
  if (st.name) card.querySelector('.tool-name').textContent = st.name;
  if (st.args !== undefined) card.querySelector('.tool-args').textContent = argsText(st.args);
  else if (st.argsText) card.querySelector('.tool-args').textContent = st.argsText;
  const status = st.status || '';
  card.dataset.status = status;
  card.querySelector('.tool-status').textContent = STATUS_LABEL[status] || status;
  card.querySelector('.tool-duration').textContent = st.endedAt ? duration(st) : '';
  const out = card.querySelector('.tool-output');
  out.textContent = st.output || '';
  out.hidden = !st.output;
}

/**
 * A card for call `callId`, showing its live state if events came for it.
 * @param {{callId: string, name?: string, args?: any}} call
 */
export function toolCard(call) {
  const card = el('details', { class: 'tool-card', 'data-call-id': call.callId || '' },
    el('summary', {},
      el('span', { class: 'tool-name', text: call.name || 'tool' }),
      el('span', { class: 'tool-status' }),
      el('span', { class: 'tool-duration' })),
    el('pre', { class: 'tool-args', text: argsText(call.args) }),
    el('pre', { class: 'tool-output', hidden: true }));
  const st = states.get(call.callId);
  if (st) paint(card, { ...st, name: st.name || call.name, args: st.args ?? call.args });
  card.open = Boolean(st && st.status === 'running');
  return card;
}

/** The cards of `callId` in the document. */
export function cardsFor(callId) {
  return [...document.querySelectorAll('.tool-card')].filter((c) => c.dataset.callId === callId);
}

/**
 * Takes a `tool.start`, `tool.update` or `tool.end` event into the state
 * and every card of that call. Returns false for another kind of event.
 */
export function noteToolEvent(ev) {
  if (!ev || typeof ev.callId !== 'string') return false;
  let st = states.get(ev.callId);
  if (!st) {
    st = { name: ev.name, args: undefined, argsText: '', status: '', output: '', startedAt: Date.now(), endedAt: null };
    states.set(ev.callId, st);
    if (states.size > MAX_STATES) states.delete(states.keys().next().value);
  }
  if (ev.type === 'tool.args') {
    // The model is still writing the call: its arguments as raw JSON text.
    st.argsText += typeof ev.delta === 'string' ? ev.delta : '';
    if (!st.status) st.status = 'calling';
    if (ev.name) st.name = ev.name;
  } else if (ev.type === 'tool.start') {
    Object.assign(st, { name: ev.name, args: ev.args, status: 'running', startedAt: Date.now() });
  } else if (ev.type === 'tool.update') {
    Object.assign(st, { status: 'running', output: typeof ev.output === 'string' ? ev.output : st.output });
  } else if (ev.type === 'tool.end') {
    Object.assign(st, {
      status: ev.isError ? 'error' : 'ok',
      output: typeof ev.output === 'string' ? ev.output : st.output,
      endedAt: Date.now(),
    });
  } else {
    return false;
  }
  for (const card of cardsFor(ev.callId)) {
    paint(card, st);
    if (ev.type === 'tool.start') card.open = true;
  }
  return true;
}
