// loopchat web chat: wires the modules together.
//
// Data flow: the relay's event stream (/webchat/events) is the single source
// of what the transcript shows. Sending goes through the outbox (persisted,
// idempotent by client uuid); the rpc answer is only used to learn that the
// message was accepted or refused — its events are never rendered, so
// nothing appears twice.

import { api, rpcStream, ApiError, onUnauthorized, token, TOKEN_STORAGE_KEY, exportSession } from './js/api.js';
import { EventStream } from './js/events.js';
import { Transcript } from './js/transcript.js';
import { messageElement, liveElement, pendingElement, markFailed, thinkingBlock } from './js/render.js';
import { Outbox } from './js/outbox.js';
import { toolCard, handleToolEvent, applyPending, setApprover, watchTranscript } from './js/tools.js';
import { Alerts } from './js/alerts.js';
import { SessionList } from './js/sessions.js';
import { Composer, uploadType } from './js/composer.js';
import { registerServiceWorker, setUpInstallPrompt, setBadge } from './js/pwa.js';
import { SearchDialog } from './js/search.js';
import { uuid, newSessionKey, SESSION_KEY_RE, store, contentText, el, WELCOME_DONE_KEY } from './js/util.js';

const PAGE = 50;
const DEFAULT_SESSION = 'main';
const THINKING_LEVELS = ['off', 'minimal', 'low', 'medium', 'high'];

const $ = (id) => document.getElementById(id);

const ui = {
  app: $('app'),
  sidebar: $('sidebar'),
  scrim: $('sidebar-scrim'),
  sidebarToggle: $('sidebar-toggle'),
  title: $('session-title'),
  agentInfo: $('agent-info'),
  liveStatus: $('live-status'),
  thinking: $('thinking'),
  model: $('model'),
  modelPicker: $('model-picker'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  bannerAction: $('banner-action'),
  authScreen: $('auth-screen'),
  authTitle: $('auth-title'),
  authText: $('auth-text'),
  authRetry: $('auth-retry'),
  scroller: $('scroller'),
  messages: $('messages'),
  live: $('live'),
  pending: $('pending'),
  empty: $('empty'),
  olderStatus: $('older-status'),
  jump: $('jump-latest'),
  announcer: $('announcer'),
  stop: $('stop'),
  input: $('input'),
  newChat: $('new-chat'),
};

/** Per-tab identity for presence (survives reloads of this tab only). */
const clientId = (() => {
  try {
    let id = sessionStorage.getItem('loopchat.client');
    if (!id) {
      id = uuid();
      sessionStorage.setItem('loopchat.client', id);
    }
    return id;
  } catch {
    return uuid();
  }
})();

const state = {
  session: null,
  loadGen: 0,
  info: null,
  stream: null,
  connected: false,
  runs: new Map(), // runId → {node, textNode, text, thinkingNode, userText, userMsgId}
  activeRunId: null,
  pendingNodes: new Map(), // client id → element
  bannerTimer: 0,
  offlineSince: 0,
  authFailed: false,
};

// ---------------------------------------------------------------- transcript

const transcript = new Transcript({
  scroller: ui.scroller,
  list: ui.messages,
  root: ui.messages.parentElement,
  render: (msg, extra) => messageElement(msg, {
    ...extra,
    onRetry: msg.stopReason === 'error' || extra.error ? () => retryFor(msg.id, extra.runId, extra.userText) : undefined,
    onEdit: msg.role === 'user' && msg.parentId ? () => branchTurn({ editOf: msg }) : undefined,
    onRegenerate: msg.role === 'assistant' && msg.parentId && !msg.kind ? () => branchTurn({ regenerate: msg.parentId }) : undefined,
  }),
  fetchOlder: (beforeId) => api.history(state.session, beforeId, PAGE),
  fetchNewer: (afterId) => api.historyAfter(state.session, afterId, PAGE, state.viewLeaf || undefined),
  onLatest: () => { state.viewLeaf = null; loadSession(); },
  onChange: (s) => {
    // "Start a conversation" only once the session is known to be empty, not
    // while a page opened offline (from the worker's shell) has loaded nothing
    const loaded = ui.app.dataset.state !== 'offline' && ui.app.dataset.state !== 'loading';
    ui.empty.hidden = !(loaded && s.empty && state.runs.size === 0 && ui.pending.childElementCount === 0);
    if (s.loadingOlder) {
      ui.olderStatus.hidden = false;
      ui.olderStatus.textContent = 'Loading older messages…';
    } else if (s.olderError) {
      ui.olderStatus.hidden = false;
      ui.olderStatus.replaceChildren(
        `Could not load older messages: ${s.olderError.message} `,
        el('button', { class: 'btn btn-small', type: 'button', text: 'Try again', onclick: () => { transcript.olderError = null; transcript.loadOlder(); } }));
    } else if (s.atTop && !s.hasMore && !s.empty) {
      ui.olderStatus.hidden = false;
      ui.olderStatus.textContent = 'Beginning of the conversation';
    } else {
      ui.olderStatus.hidden = true;
    }
    ui.jump.hidden = !s.showJump;
  },
});

ui.jump.addEventListener('click', () => transcript.jumpToLatest());

setApprover((callId, decision) => api.approve(state.session, callId, decision));
watchTranscript(ui.messages, (id) => transcript.byId.get(id));

function announce(text) {
  ui.announcer.textContent = '';
  // a separate task so screen readers notice the change
  setTimeout(() => { ui.announcer.textContent = text; }, 50);
}

// ---------------------------------------------------------------- banner

function showBanner(text, { kind = 'warn', action = null, actionLabel = '' } = {}) {
  ui.banner.hidden = false;
  ui.banner.className = `banner ${kind}`;
  ui.bannerText.textContent = text;
  ui.bannerAction.hidden = !action;
  ui.bannerAction.textContent = actionLabel;
  ui.bannerAction.onclick = action;
}

function hideBanner() {
  clearInterval(state.bannerTimer);
  state.bannerTimer = 0;
  ui.banner.hidden = true;
  ui.banner.className = 'banner';
}

function showOfflineBanner(retryAt, what = 'Connection to the relay lost') {
  clearInterval(state.bannerTimer);
  const tick = () => {
    const secs = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    showBanner(secs > 0 ? `${what} — reconnecting in ${secs} s…` : `${what} — reconnecting…`, {
      kind: 'warn',
      action: () => reconnectNow(),
      actionLabel: 'Reconnect now',
    });
    ui.banner.dataset.state = 'offline';
  };
  tick();
  state.bannerTimer = setInterval(tick, 1000);
}

/**
 * The relay refused this page's token. Without a token the page was never
 * signed in; with one, the token was rotated or revoked (the relay closes the
 * streams of a revoked credential, and the reconnect lands here). Either way
 * nothing is retried with it: what is queued stays queued for the new URL.
 */
function showUnauthorized() {
  if (state.authFailed) return;
  state.authFailed = true;
  if (state.stream) state.stream.close();
  clearTimeout(state.retryLoad);
  hideBanner();
  const signedOut = Boolean(token());
  ui.app.dataset.state = signedOut ? 'signed-out' : 'unauthorized';
  if (signedOut) {
    ui.authTitle.textContent = 'Signed out: open the new URL';
    ui.authText.replaceChildren(
      'The relay no longer accepts the token this window signed in with: it was rotated (',
      el('code', { text: 'loopchat token rotate' }),
      ') or the relay was set up anew. Open the new URL printed by ',
      el('code', { text: 'loopchat serve' }),
      ' (or run ',
      el('code', { text: 'loopchat info --json' }),
      ' for the token) in this browser; windows still open here then sign in again by themselves. Messages not yet sent stay queued.');
  }
  ui.authScreen.hidden = false;
  renderPending();
}

onUnauthorized(() => showUnauthorized());
ui.authRetry.addEventListener('click', () => location.reload());
// The new URL opened in another tab stores its token for this origin: take it.
window.addEventListener('storage', (e) => {
  if (e.key === TOKEN_STORAGE_KEY && e.newValue && state.authFailed) location.reload();
});

// ---------------------------------------------------------------- runs (streaming replies)

function runFor(runId, create = true) {
  let run = state.runs.get(runId);
  if (!run && create) {
    const node = liveElement(runId);
    const textEl = node.querySelector('.stream-text');
    const textNode = document.createTextNode('');
    textEl.append(textNode);
    run = { runId, node, textNode, text: '', thinkingNode: null, thinking: '', userText: null, userMsgId: null };
    state.runs.set(runId, run);
    transcript.atBottomChange(() => ui.live.append(node));
  }
  return run;
}

function setActiveRun(runId) {
  state.activeRunId = runId;
  ui.stop.hidden = !runId;
  ui.app.classList.toggle('running', Boolean(runId));
}

function finishRun(runId) {
  const run = state.runs.get(runId);
  if (run) {
    run.node.remove();
    state.runs.delete(runId);
  }
  if (state.activeRunId === runId) {
    // another run of this session may still be going (queued turns)
    const next = [...state.runs.keys()].pop() || null;
    setActiveRun(next);
  }
  transcript.changed();
}

async function stopRun() {
  const runId = state.activeRunId;
  if (!runId) return;
  ui.stop.disabled = true;
  try {
    await api.abort(state.session, runId);
  } catch (err) {
    showBanner(`Could not stop the reply: ${err.message}`, { kind: 'error', action: hideBanner, actionLabel: 'Dismiss' });
  } finally {
    ui.stop.disabled = false;
  }
}
ui.stop.addEventListener('click', stopRun);

/** Retry a failed turn: send the user's message that started it again (text and images). */
function retryFor(messageId, runId, userText) {
  const userId = runId && state.runUserIds.get(runId);
  const user = (userId && transcript.byId.get(userId)) || transcript.previousUserText(messageId);
  const text = user ? contentText(user.content) : (userText || (runId && state.runUsers.get(runId)) || '');
  const parts = user && Array.isArray(user.content) ? user.content : [];
  const attachments = parts
    .filter((p) => p && p.type === 'image' && typeof p.url === 'string')
    .map((p) => ({ id: p.url.split('/').pop(), url: p.url, mimeType: p.mimeType }));
  if (!text && attachments.length === 0) return;
  enqueue({ text, attachments });
}

function failRun(runId, errorText) {
  const run = state.runs.get(runId);
  const storedId = transcript.assistantIdForRun(runId);
  const text = errorText || 'The agent failed to answer.';
  if (storedId) {
    transcript.setExtra(storedId, { error: text });
    const node = transcript.node(storedId);
    if (node) markFailed(node, text, () => retryFor(storedId, runId));
    finishRun(runId);
    return;
  }
  // Nothing stored for this run: keep what streamed so far as a failed turn.
  const synthetic = {
    id: `run-failed:${runId}`,
    role: 'assistant',
    content: run ? run.text : '',
    timestamp: new Date().toISOString(),
    stopReason: 'error',
  };
  const userText = (run && run.userText) || state.runUsers.get(runId) || null;
  finishRun(runId);
  if (transcript.has(synthetic.id)) return;
  transcript.add(synthetic, { runId, error: text, synthetic: true, userText });
}

function handleEvent(ev) {
  switch (ev.type) {
    case 'message': {
      const msg = ev.message;
      if (!msg || msg.id == null) return;
      const runId = ev.runId || null;
      if (msg.role === 'user') {
        matchPending(msg);
        if (runId) {
          const run = state.runs.get(runId);
          if (run) { run.userText = contentText(msg.content); run.userMsgId = msg.id; }
          state.runUsers.set(runId, contentText(msg.content));
          state.runUserIds.set(runId, msg.id);
        }
        transcript.add(msg, runId ? { runId } : undefined);
      } else {
        const run = runId ? state.runs.get(runId) : null;
        const extra = runId ? { runId } : undefined;
        if (runId && msg.stopReason === 'error' && state.runErrors.has(runId)) extra.error = state.runErrors.get(runId);
        transcript.atBottomChange(() => {
          if (run) {
            run.node.remove();
            state.runs.delete(runId);
          }
          // a placeholder kept for a run is replaced by the real stored message
          if (runId) {
            transcript.remove(`run-failed:${runId}`);
            transcript.remove(`run-ended:${runId}`);
          }
          transcript.add(msg, extra);
        });
        if (msg.role === 'assistant') announce(`Assistant: ${contentText(msg.content).slice(0, 200)}`);
      }
      renderPending();
      break;
    }
    case 'run.start': {
      if (!ev.runId || transcript.assistantIdForRun(ev.runId)) return;
      const run = runFor(ev.runId);
      if (state.runUsers.has(ev.runId)) run.userText = state.runUsers.get(ev.runId);
      setActiveRun(ev.runId);
      break;
    }
    case 'delta': {
      if (!ev.runId || typeof ev.text !== 'string') return;
      const run = runFor(ev.runId);
      if (!state.activeRunId) setActiveRun(ev.runId);
      transcript.atBottomChange(() => {
        run.text += ev.text;
        run.textNode.appendData(ev.text);
      });
      break;
    }
    case 'thinking': {
      if (!ev.runId || typeof ev.text !== 'string') return;
      const run = runFor(ev.runId);
      transcript.atBottomChange(() => {
        if (!run.thinkingNode) {
          const block = thinkingBlock('', true);
          run.node.querySelector('.msg-body').prepend(block);
          run.thinkingNode = document.createTextNode('');
          block.querySelector('.thinking-text').append(run.thinkingNode);
        }
        run.thinking += ev.text;
        run.thinkingNode.appendData(ev.text);
      });
      break;
    }
    case 'tool.start': {
      if (!ev.runId || typeof ev.callId !== 'string') return;
      // A backend that runs its own tools (pi) reports a call before its
      // stored message arrives: until then the card lives in the run's
      // bubble. The relay's own tool loop stores the call first.
      if (!document.querySelector(`.tool-card[data-call-id="${CSS.escape(ev.callId)}"]`)) {
        const run = runFor(ev.runId);
        if (!state.activeRunId) setActiveRun(ev.runId);
        transcript.atBottomChange(() => {
          run.node.querySelector('.msg-body').append(toolCard({ id: ev.callId, name: ev.name, arguments: ev.args }));
        });
      }
      handleToolEvent(ev);
      break;
    }
    case 'run.end': {
      const runId = ev.runId;
      if (!runId) return;
      state.runsEnded.add(runId);
      if (ev.state === 'error') {
        state.runErrors.set(runId, ev.error || 'The agent failed to answer.');
        failRun(runId, ev.error);
        announce(`The agent failed: ${ev.error || ''}`);
      } else {
        const run = state.runs.get(runId);
        if (run && !transcript.assistantIdForRun(runId)) {
          // The run ended without a stored reply reaching us: keep its text.
          transcript.add({
            id: `run-ended:${runId}`,
            role: 'assistant',
            content: run.text,
            timestamp: new Date().toISOString(),
            stopReason: ev.state === 'aborted' ? 'aborted' : undefined,
          }, { runId, synthetic: true });
        }
        finishRun(runId);
      }
      if (state.activeRunId === runId) setActiveRun(null);
      break;
    }
    default:
      handleToolEvent(ev);
      break;
  }
}
state.runErrors = new Map();
state.runUsers = new Map();
state.runUserIds = new Map();
state.runsEnded = new Set();

// ---------------------------------------------------------------- outbox and sending

const outbox = new Outbox({
  send: (item) => sendItem(item),
  onChange: () => renderPending(),
});

function renderPending() {
  const items = outbox.forSession(state.session).filter((i) => !(i.msgId && transcript.has(i.msgId)));
  const keep = new Set(items.map((i) => i.id));
  for (const [id, node] of state.pendingNodes) {
    if (!keep.has(id)) {
      node.remove();
      state.pendingNodes.delete(id);
    }
  }
  // nothing but the tracked bubbles lives in #pending
  for (const child of [...ui.pending.children]) {
    if (![...state.pendingNodes.values()].includes(child)) child.remove();
  }
  transcript.atBottomChange(() => {
    for (const item of items) {
      let node = state.pendingNodes.get(item.id);
      if (!node) {
        node = pendingElement(item);
        state.pendingNodes.set(item.id, node);
      }
      ui.pending.append(node); // keeps order
      const status = node.querySelector('.msg-status');
      node.classList.toggle('failed', item.state === 'failed');
      node.querySelector('.msg-actions')?.remove();
      if (item.state === 'failed') {
        status.textContent = `Not sent: ${item.error || 'the relay refused it.'}`;
        node.append(el('div', { class: 'msg-actions' },
          el('button', { class: 'btn btn-small retry-btn', type: 'button', text: 'Retry', onclick: () => retryPending(item.id) }),
          el('button', { class: 'btn btn-small', type: 'button', text: 'Discard', onclick: () => outbox.remove(item.id) })));
      } else if (outbox.inFlight.has(item.id) && state.connected) {
        status.textContent = 'Sending…';
      } else {
        status.textContent = 'Queued — will be sent when the relay is reachable.';
      }
      node.dataset.state = item.state === 'failed' ? 'failed' : (outbox.inFlight.has(item.id) && state.connected ? 'sending' : 'queued');
    }
  });
}

async function retryPending(id) {
  const item = outbox.get(id);
  if (!item) return;
  // A refused message gets a new idempotency key: the first one is spent.
  const files = await outbox.filesOf(item);
  outbox.remove(id);
  outbox.add({ ...item, id: uuid(), state: undefined, error: undefined, fileCount: undefined }, files || []);
  outbox.flush();
}

/** A user message from the relay is ours if an unmatched outbox item has the same text. */
function matchPending(msg) {
  const text = contentText(msg.content);
  const item = outbox.forSession(state.session).find((i) => !i.msgId && i.state !== 'failed' && (i.text || '') === text);
  if (item) outbox.update(item.id, { msgId: msg.id });
}

function enqueue({ text, files = [], previews = [], attachments = [] }) {
  const item = {
    id: uuid(),
    session: state.session,
    text,
    thinking: ui.thinking.value,
    model: ui.modelPicker.hidden ? undefined : (ui.model.value || undefined),
    attachments, // [{id, url, mimeType, name}] already uploaded
    // file names for the pending bubble (the files themselves are in the outbox)
    fileNames: files.filter((f) => !f.type.startsWith('image/')).map((f) => f.name || 'file'),
    imageNames: files.filter((f) => f.type.startsWith('image/')).map((f) => f.name || 'image'),
    createdAt: new Date().toISOString(),
    // Looking at another branch: the message goes on from there.
    parentId: state.viewLeaf || undefined,
  };
  state.viewLeaf = null;
  // sent with this turn, the choice is the session's from now on (info.model)
  store.remove(`loopchat.model.${state.session}`);
  if (previews.length) {
    // previews are memory-only (blob: URLs); registered before the outbox
    // change below renders the pending bubble
    state.pendingNodes.set(item.id, pendingElement({ ...item, previews }));
  }
  outbox.add({ ...item }, files);
  transcript.jumpToLatest();
  renderPending();
  outbox.flush();
}

async function uploadFiles(item) {
  const done = (item.attachments || []).length;
  const attachments = [...(item.attachments || [])];
  if (done >= (item.fileCount || 0)) return attachments;
  const files = await outbox.filesOf(item);
  if (files === null) throw new Error('its files are no longer there (they were not kept for this page)');
  const types = state.info && state.info.attachments ? state.info.attachments.types : undefined;
  for (let i = done; i < files.length; i++) {
    const file = files[i];
    const res = await api.uploadAttachment(file, uploadType(file, types) || file.type);
    attachments.push({ id: res.id, url: res.url, mimeType: res.mimeType, name: file.name || undefined });
    outbox.update(item.id, { attachments });
  }
  return attachments;
}

/**
 * Send one outbox item. Resolves 'sent' once the relay has accepted it (its
 * first event, or its answer), 'offline' when the relay cannot be reached,
 * 'failed' when the relay refused it. The rpc keeps running afterwards; its
 * end removes the item from the outbox.
 */
function sendItem(item) {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (r) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
      renderPending();
    };
    let runId = null;
    (async () => {
      let attachments;
      try {
        attachments = await uploadFiles(item);
      } catch (err) {
        if ((err instanceof ApiError && err.offline) || state.authFailed) return settle('offline');
        outbox.update(item.id, { state: 'failed', error: `attachment upload failed: ${err.message}` });
        outbox.settle(item.id);
        return settle('failed');
      }
      const body = { text: item.text, session: item.session, id: item.id };
      if (item.parentId) body.parentId = item.parentId;
      if (item.thinking && THINKING_LEVELS.includes(item.thinking)) body.thinking = item.thinking;
      if (attachments.length) body.attachments = attachments.map((a) => (a.name ? { id: a.id, name: a.name } : { id: a.id }));
      if (item.model) body.model = item.model;
      renderPending();
      try {
        await rpcStream(body, {
          onEvent: (ev) => {
            if (ev.type === 'message' && ev.message && ev.message.role === 'user') {
              if (!outbox.get(item.id)?.msgId) outbox.update(item.id, { msgId: ev.message.id });
              if (ev.runId) runId = ev.runId;
              settle('sent');
            } else if (ev.type === 'run.start') {
              runId = ev.runId || runId;
              settle('sent');
            }
          },
        });
        outbox.remove(item.id);
        settle('sent');
        if (item.parentId && item.session === state.session) loadSession();
      } catch (err) {
        if (!(err instanceof ApiError) || err.offline) {
          // Lost the relay mid-way: the item stays, and is sent again (same id) on reconnect.
          outbox.settle(item.id);
          return settle('offline');
        }
        if (state.authFailed) {
          // Refused for the token, not for the message: it waits for the new URL.
          outbox.settle(item.id);
          return settle('offline');
        }
        if (err.code === 'agent_error' || err.code === 'agent_timeout') {
          // The turn happened and failed; the event stream shows it (run.end error),
          // in order after the user's message. Only if that stream has not shown it
          // after a while is it shown from here.
          outbox.remove(item.id);
          if (runId) {
            setTimeout(() => {
              if (state.connected && item.session === state.session && !state.runsEnded.has(runId)) {
                state.runsEnded.add(runId);
                state.runErrors.set(runId, err.message);
                failRun(runId, err.message);
              }
            }, 3000);
          }
          return settle('sent');
        }
        outbox.update(item.id, { state: 'failed', error: err.message });
        outbox.settle(item.id);
        settle('failed');
      }
    })();
  });
}

// ---------------------------------------------------------------- models

/**
 * The model picker: the backend's models (GET /webchat/models), the
 * session's current one selected. The choice goes with the next turn
 * (`model`), which stores it in the session (Decision 80). Hidden when the
 * backend offers no choice.
 */
async function loadModels(key, current) {
  let list;
  try {
    list = await api.models();
  } catch {
    list = null;
  }
  if (key !== state.session) return;
  const models = list && Array.isArray(list.models) ? [...list.models] : [];
  const chosen = store.get(`loopchat.model.${key}`) || current || (list && list.default) || '';
  if (chosen && !models.includes(chosen) && list && list.source !== 'none') models.unshift(chosen);
  // a backend that is down: the picker says so (its reason on hover) instead of vanishing
  const unavailable = models.length === 0 && Boolean(list && list.error);
  ui.modelPicker.hidden = models.length === 0 && !unavailable;
  ui.modelPicker.title = unavailable ? `The model list could not be read: ${list.error}` : '';
  ui.model.disabled = unavailable;
  ui.model.replaceChildren(...(unavailable ? [el('option', { value: '', text: 'unavailable' })] : models.map((m) => el('option', { value: m, text: m }))));
  if (chosen && models.includes(chosen)) ui.model.value = chosen;
}

ui.model.addEventListener('change', () => {
  store.set(`loopchat.model.${state.session}`, ui.model.value);
});

// ---------------------------------------------------------------- sessions

function thinkingFor(key, fallback) {
  const v = store.get(`loopchat.thinking.${key}`);
  return THINKING_LEVELS.includes(v) ? v : (THINKING_LEVELS.includes(fallback) ? fallback : 'off');
}

ui.thinking.addEventListener('change', () => {
  store.set(`loopchat.thinking.${state.session}`, ui.thinking.value);
});

function sessionFromUrl() {
  const key = new URL(location.href).searchParams.get('session');
  return key && SESSION_KEY_RE.test(key) ? key : null;
}

function setUrl(key, push) {
  const u = new URL(location.href);
  u.searchParams.delete('token');
  u.searchParams.set('session', key);
  if (u.href === location.href) return;
  if (push) history.pushState({ session: key }, '', u.pathname + u.search + u.hash);
  else history.replaceState({ session: key }, '', u.pathname + u.search + u.hash);
}

/** The composer's unsent text of each session, kept across reloads. */
const draftKey = (session) => `loopchat.draft.${session}`;
function saveDraft() {
  if (!state.session) return;
  const text = ui.input.value;
  if (text) store.set(draftKey(state.session), text);
  else store.remove(draftKey(state.session));
}
function restoreDraft() {
  composer.setText(store.get(draftKey(state.session), '') || '');
}
ui.input.addEventListener('input', saveDraft);

async function openSession(key, { push = false } = {}) {
  if (state.stream) state.stream.close();
  state.stream = null;
  if (key !== state.session) {
    saveDraft();
    state.session = key;
    restoreDraft();
  }
  setUrl(key, push);
  updateTitle();
  ui.title.textContent = sessions.titleOf(key) || key;
  sessions.setCurrent(key);
  ui.thinking.value = thinkingFor(key, 'off');
  closeSidebar();
  await loadSession();
  sendPresence();
}

function clearLive() {
  for (const run of state.runs.values()) run.node.remove();
  state.runs.clear();
  state.runErrors.clear();
  state.runUsers.clear();
  state.runUserIds.clear();
  state.runsEnded.clear();
  setActiveRun(null);
  for (const node of state.pendingNodes.values()) node.remove();
  state.pendingNodes.clear();
}

/** (Re)load the current session from /info and follow its events. */
/**
 * A turn on another branch (pi's tree): the edited text as a new child of
 * the edited message's parent, or the user message answered again. The
 * conversation is then the new branch, so the session is loaded again.
 */
async function branchTurn({ editOf, regenerate }) {
  const session = state.session;
  const body = { session, id: uuid(), text: '' };
  // The picker's model, as for a new message: a branch can be answered by
  // another model (the relay records pi's model_change at the fork).
  if (!ui.modelPicker.hidden && ui.model.value) body.model = ui.model.value;
  if (editOf) {
    const text = window.prompt('Edit message', contentText(editOf.content));
    if (text === null || !text.trim()) return;
    body.text = text;
    body.parentId = editOf.parentId;
  } else {
    body.regenerate = regenerate;
  }
  try {
    await rpcStream(body, {});
  } catch (err) {
    if (!(err instanceof ApiError) || err.offline) return;
    if (err.code !== 'agent_error' && err.code !== 'agent_timeout') window.alert(`Could not send: ${err.message}`);
  }
  if (state.session === session) await loadSession();
}

// ---------------------------------------------------------------- branches
// pi's tree: a message whose parent has other children of its role gets a
// ‹ i/n › switcher. Switching shows that branch (down to its newest entry)
// and appends nothing, as pi's /tree appends nothing to move its leaf; the
// next message sent goes on from there.

async function refreshTree(key) {
  let tree;
  try {
    tree = await api.tree(key);
  } catch {
    return;
  }
  if (key !== state.session || !tree.complete) return;
  state.tree = tree;
  decorateBranches();
}

function siblingsOf(id) {
  const tree = state.tree;
  if (!tree) return null;
  const me = tree.entries.find((e) => e.id === id);
  if (!me || !me.role) return null;
  const ids = tree.entries.filter((e) => e.role === me.role && e.parentId === me.parentId).map((e) => e.id);
  return ids.length > 1 ? ids : null;
}

/** The newest entry of the subtree under `id`: where that branch ends. */
function branchEnd(id) {
  const under = new Set([id]);
  let last = id;
  for (const e of state.tree.entries) {
    if (e.parentId && under.has(e.parentId)) { under.add(e.id); last = e.id; }
  }
  return last;
}

function decorateBranches() {
  for (const node of ui.messages.querySelectorAll('.msg[data-id]')) {
    node.querySelector('.branch-switch')?.remove();
    const ids = siblingsOf(node.dataset.id);
    if (!ids) continue;
    const i = ids.indexOf(node.dataset.id);
    const go = (j) => () => showBranch(branchEnd(ids[j]));
    node.append(el('div', { class: 'branch-switch', role: 'group', 'aria-label': 'Branches' },
      el('button', { class: 'branch-prev', type: 'button', 'aria-label': 'Previous branch', text: '‹', disabled: i === 0, onclick: go(i - 1) }),
      el('span', { class: 'branch-pos', text: `${i + 1}/${ids.length}` }),
      el('button', { class: 'branch-next', type: 'button', 'aria-label': 'Next branch', text: '›', disabled: i === ids.length - 1, onclick: go(i + 1) })));
  }
}

async function showBranch(leaf) {
  const key = state.session;
  const page = await api.historyTo(key, leaf, PAGE);
  if (key !== state.session) return;
  transcript.reset(page.messages || [], page.hasMore);
  state.viewLeaf = state.tree && leaf === state.tree.leafId ? null : leaf;
  decorateBranches();
}

async function loadSession(attempt = 0) {
  const gen = ++state.loadGen;
  const key = state.session;
  let info;
  try {
    info = await api.info(key, PAGE);
  } catch (err) {
    if (gen !== state.loadGen || state.authFailed) return;
    if (err.offline) {
      ui.app.dataset.state = 'offline';
      const delay = Math.min(30000, 1000 * 2 ** attempt);
      showOfflineBanner(Date.now() + delay, 'The relay cannot be reached');
      state.retryLoad = setTimeout(() => { if (gen === state.loadGen) loadSession(attempt + 1); }, delay);
      renderPending();
      return;
    }
    if (err.code === 'invalid_session_key' && key !== DEFAULT_SESSION) {
      showBanner(`“${key}” is not a valid session key; opened “${DEFAULT_SESSION}” instead.`, { kind: 'error', action: hideBanner, actionLabel: 'Dismiss' });
      openSession(DEFAULT_SESSION);
      return;
    }
    ui.app.dataset.state = 'error';
    showBanner(`Could not open the session: ${err.message}`, { kind: 'error', action: () => loadSession(), actionLabel: 'Try again' });
    return;
  }
  if (gen !== state.loadGen) return;
  if (welcomeDue(info)) {
    location.replace(`welcome.html?${new URLSearchParams({ v: String(info.welcomeVersion), relay: info.version, session: key })}`);
    return;
  }
  performance.mark('loopchat:info');
  clearTimeout(state.retryLoad);
  state.info = info;
  ui.app.dataset.state = 'ready';
  hideBanner();
  clearLive();
  transcript.reset(info.initialMessages || [], info.hasMore);
  state.viewLeaf = null;
  applyPending(info.pendingApprovals);
  performance.mark('loopchat:rendered');
  refreshTree(key);
  if (!store.get(`loopchat.thinking.${key}`)) ui.thinking.value = thinkingFor(key, info.thinkingLevel);
  composer.setLimits(info.attachments);
  loadModels(key, info.model);
  const agent = info.agent || {};
  ui.agentInfo.textContent = [agent.backend, agent.model, info.version ? `v${info.version}` : null].filter(Boolean).join(' · ');
  let since = Number(info.lastSeq) || 0;
  if (info.activeRun && info.activeRun.runId) {
    // Show the reply in progress: replay its events from just before run.start.
    since = Math.max(0, Number(info.activeRun.startSeq) - 1);
    runFor(info.activeRun.runId);
    setActiveRun(info.activeRun.runId);
  }
  renderPending();
  startStream(since);
  outbox.flush();
}

/**
 * A browser's first visit (and the first after a new tour or relay version)
 * goes through the welcome tour once. In the desktop shell (which has
 * window.ipc) the shell decides, from its own settings.
 */
function welcomeDue(info) {
  if (window.ipc || !info.welcomeVersion) return false;
  return store.get(WELCOME_DONE_KEY) !== `${info.welcomeVersion}:${info.version}`;
}

function startStream(since) {
  if (state.stream) state.stream.close();
  const stream = new EventStream({
    session: state.session,
    since,
    notifySince: alerts.maxSeq,
    client: clientId,
    onEvent: (ev) => handleEvent(ev),
    onNotification: (n) => { alerts.add(n); },
    // The session list is pushed: no polling.
    onSessions: (ev) => {
      sessions.apply(ev);
      search.changed();
    },
    onState: (s) => onStreamState(stream, s),
    onReset: (seq) => {
      // The relay cannot replay what we missed (it restarted, or its log moved
      // on): start over from /info. A second reset straight after that means the
      // relay's log starts at `seq`: follow from there instead of looping.
      stream.close();
      const now = Date.now();
      if (now - (state.lastResetAt || 0) < 10000) {
        startStream(seq);
        return;
      }
      state.lastResetAt = now;
      loadSession();
    },
  });
  state.stream = stream;
  stream.start();
}

function onStreamState(stream, s) {
  if (stream !== state.stream) return;
  const was = state.connected;
  state.connected = s.connected;
  ui.app.classList.toggle('offline', !s.connected);
  if (s.connected) {
    // Changes while no stream was open are not replayed: fetch the list
    // once per stream (a session switch opens a new one).
    if (!stream.listFetched) {
      stream.listFetched = true;
      sessions.refreshSoon(0);
    }
    state.offlineSince = 0;
    hideBanner();
    // This window's own stream is counted now.
    if (!was) refreshLiveStatus();
    ui.banner.dataset.state = 'online';
    if (!was && state.offlineBefore) {
      // back after a disconnect: catch up on what the stream does not replay
      sessions.refreshSoon(0);
      alerts.load();
    }
    state.offlineBefore = false;
    outbox.flush();
  } else {
    if (!state.offlineSince) state.offlineSince = Date.now();
    state.offlineBefore = true;
    showOfflineBanner(s.retryAt || Date.now() + (s.retryIn || 1000));
    // Distinguish "relay down" from "token no longer accepted" at once (a
    // refused token is reported by api.js), not only at the next reconnect.
    api.sessions().catch(() => {});
  }
  renderPending();
}

function reconnectNow() {
  if (state.stream && !state.stream.closed) state.stream.reconnectNow();
  else loadSession();
}

window.addEventListener('online', () => reconnectNow());

// Back after a long time hidden (sleep, another tab): reopen the stream.
let hiddenAt = 0;
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') {
    hiddenAt = Date.now();
  } else if (hiddenAt && Date.now() - hiddenAt > 30000 && state.stream) {
    state.stream.refresh();
  }
});

const sessions = new SessionList({
  list: $('session-list'),
  status: $('session-list-status'),
  archivedToggle: $('archived-toggle'),
  // Deleting the open chat leaves it for a new one.
  onDeleted: (key) => { if (key === state.session) newChat(); },
  onSelect: (key) => {
    if (key === state.session) { closeSidebar(); return; }
    openSession(key, { push: true });
  },
  // A session's name (pi's session_info) is its title once the list has it.
  onChange: () => {
    if (state.session) ui.title.textContent = sessions.titleOf(state.session) || state.session;
  },
});

// Renaming writes pi's session_info entry into the transcript.
$('rename-session').addEventListener('click', async () => {
  const key = state.session;
  const name = window.prompt('Name this chat', sessions.titleOf(key) || '');
  if (name === null) return;
  try {
    await api.rename(key, name);
  } catch (err) {
    window.alert(`Could not rename: ${err.message}`);
    return;
  }
  await sessions.refresh();
});

// Export and import (the ⋯ menu): a download of the relay's file, and a
// file sent as is; the relay checks it and refuses a broken one whole.
const chatMenu = $('chat-menu');
for (const item of chatMenu.querySelectorAll('[data-export]')) {
  item.addEventListener('click', async () => {
    chatMenu.open = false;
    try {
      const { blob, name } = await exportSession(state.session, item.dataset.export);
      const href = URL.createObjectURL(blob);
      const a = el('a', { href, download: name, hidden: '' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60000);
    } catch (err) {
      window.alert(`Could not export: ${err.message}`);
    }
  });
}
$('import-chats').addEventListener('click', () => {
  chatMenu.open = false;
  $('import-input').click();
});
$('import-input').addEventListener('change', async (e) => {
  const input = /** @type {HTMLInputElement} */ (e.target);
  const file = input.files && input.files[0];
  input.value = '';
  if (!file) return;
  let res;
  try {
    res = await api.importFile(file);
  } catch (err) {
    window.alert(`Could not import ${file.name}: ${err.message}`);
    return;
  }
  await sessions.refresh();
  const first = res.sessions && res.sessions[0];
  if (first) openSession(first.key, { push: true });
});

function newChat() {
  openSession(newSessionKey(), { push: true });
  ui.input.focus();
}
ui.newChat.addEventListener('click', newChat);

window.addEventListener('popstate', () => {
  const key = sessionFromUrl() || DEFAULT_SESSION;
  if (key !== state.session) openSession(key, { push: false });
});

// ---------------------------------------------------------------- alerts

/**
 * The title carries the unread count ("(3) main — loopchat"): a browser tab
 * and the shell's window show it; the installed app shows it on its icon.
 */
let unreadCount = 0;
function updateTitle() {
  const base = `${state.session || DEFAULT_SESSION} — loopchat`;
  document.title = unreadCount > 0 ? `(${unreadCount > 99 ? '99+' : unreadCount}) ${base}` : base;
}

const alerts = new Alerts({
  onUnread: (n) => {
    if (n === unreadCount) return;
    unreadCount = n;
    updateTitle();
    setBadge(n);
  },
  bell: $('bell'),
  count: $('bell-count'),
  panel: $('alerts-panel'),
  list: $('alerts-list'),
  empty: $('alerts-empty'),
  markRead: $('mark-read'),
  onOpenSession: (key) => {
    if (!SESSION_KEY_RE.test(key)) return;
    if (key !== state.session) openSession(key, { push: true });
  },
});

// ---------------------------------------------------------------- presence

let lastPresence = null;
function sendPresence() {
  if (!state.session || state.authFailed) return;
  const focused = document.visibilityState === 'visible' && document.hasFocus();
  const key = `${state.session}|${focused}`;
  if (key === lastPresence) return;
  lastPresence = key;
  api.presence({ client: clientId, session: state.session, focused }).catch(() => { lastPresence = null; });
}
window.addEventListener('focus', sendPresence);
window.addEventListener('blur', sendPresence);
document.addEventListener('visibilitychange', sendPresence);

// ---------------------------------------------------------------- layout, keyboard

let animTimer = 0;
function animateSidebar() {
  ui.app.classList.add('sidebar-anim');
  clearTimeout(animTimer);
  animTimer = setTimeout(() => ui.app.classList.remove('sidebar-anim'), 300);
}

function openSidebar() {
  animateSidebar();
  ui.app.classList.add('sidebar-open');
  ui.scrim.hidden = false;
  ui.sidebarToggle.setAttribute('aria-expanded', 'true');
  const current = ui.sidebar.querySelector('[aria-current="page"]') || ui.newChat;
  current.focus();
}

function closeSidebar() {
  if (!ui.app.classList.contains('sidebar-open')) return false;
  animateSidebar();
  ui.app.classList.remove('sidebar-open');
  ui.scrim.hidden = true;
  ui.sidebarToggle.setAttribute('aria-expanded', 'false');
  return true;
}

ui.sidebarToggle.addEventListener('click', () => {
  if (ui.app.classList.contains('sidebar-open')) closeSidebar();
  else openSidebar();
});
ui.scrim.addEventListener('click', closeSidebar);

const SHORTCUTS = [
  ['Enter', 'Send the message'],
  ['Shift+Enter', 'New line in the message'],
  ['Ctrl+Shift+O', 'New chat'],
  ['Ctrl+K', 'Search all chats'],
  ['/', 'Go to the message box'],
  ['Shift+Esc', 'Go to the message box'],
  ['Esc', 'Stop the reply, or close a panel'],
  ['?', 'Show this list'],
];

/** The shortcut sheet (`?`): a modal dialog, closed by Esc or its button. */
function toggleShortcuts() {
  let dialog = document.getElementById('shortcuts');
  if (dialog?.open) { dialog.close(); return; }
  if (!dialog) {
    const rows = SHORTCUTS.map(([keys, what]) => el('tr', {}, el('th', { scope: 'row' }, el('kbd', { text: keys })), el('td', { text: what })));
    const close = el('button', { class: 'btn btn-small', type: 'button', text: 'Close' });
    dialog = el('dialog', { id: 'shortcuts', class: 'shortcuts', 'aria-labelledby': 'shortcuts-title' },
      el('h2', { id: 'shortcuts-title', text: 'Keyboard shortcuts' }),
      el('table', {}, el('tbody', {}, ...rows)),
      close);
    close.addEventListener('click', () => dialog.close());
    document.body.append(dialog);
  }
  dialog.showModal();
}

function isEditable(t) {
  return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
}

document.addEventListener('keydown', (e) => {
  const mod = e.ctrlKey || e.metaKey;
  if (mod && !e.shiftKey && !e.altKey && (e.key === 'k' || e.key === 'K')) {
    e.preventDefault();
    search.open();
    return;
  }
  // Its own keys (Escape closes it) must not reach the chat behind it.
  if (search.isOpen) return;
  if (mod && e.shiftKey && (e.key === 'o' || e.key === 'O')) {
    e.preventDefault();
    newChat();
    return;
  }
  if (e.key === 'Escape' && e.shiftKey) {
    e.preventDefault();
    composer.focus();
    return;
  }
  if (e.key === '?' && !mod && !e.altKey && !isEditable(e.target)) {
    e.preventDefault();
    toggleShortcuts();
    return;
  }
  if (e.key === '/' && !mod && !e.altKey && !isEditable(e.target)) {
    e.preventDefault();
    composer.focus();
    return;
  }
  if (e.key === 'Escape') {
    if (alerts.close()) { $('bell').focus(); return; }
    if (closeSidebar()) { ui.sidebarToggle.focus(); return; }
    if (state.activeRunId) {
      e.preventDefault();
      stopRun();
    }
  }
});

// ---------------------------------------------------------------- search

const search = new SearchDialog({
  dialog: $('search-dialog'),
  input: $('search-input'),
  results: $('search-results'),
  status: $('search-status'),
  onOpen: (hit) => openHit(hit),
});
$('search-open').addEventListener('click', () => search.open());

/**
 * Opens a hit's session at its message: a page around it on the
 * conversation's path, or on the hit's own branch when it is on another
 * one; the message is highlighted for a moment and takes the focus.
 */
async function openHit(hit) {
  if (hit.session !== state.session) await openSession(hit.session, { push: true });
  const key = state.session;
  let page;
  let leaf = null;
  try {
    page = await api.historyAround(key, hit.messageId, PAGE);
  } catch (err) {
    if (err.status !== 404 && err.code !== 'not_found') {
      showBanner(`Could not open the message: ${err.message}`, { kind: 'error', action: hideBanner, actionLabel: 'Dismiss' });
      return;
    }
    try {
      page = await api.historyAround(key, hit.messageId, PAGE, hit.messageId);
      leaf = hit.messageId;
    } catch (err2) {
      showBanner(`Could not open the message: ${err2.message}`, { kind: 'error', action: hideBanner, actionLabel: 'Dismiss' });
      return;
    }
  }
  if (key !== state.session) return;
  state.viewLeaf = leaf;
  const node = transcript.resetAround(page.messages || [], page.hasMore, page.hasNewer, hit.messageId);
  decorateBranches();
  if (!node) return;
  node.classList.add('search-target');
  node.setAttribute('tabindex', '-1');
  node.focus({ preventScroll: true });
  announce('Showing the message found');
  setTimeout(() => node.classList.remove('search-target'), 2500);
}

// The theme picker: boot.js applies the choice (and the system's, live).
const themePick = $('theme');
if (window.loopchatTheme) {
  themePick.value = window.loopchatTheme.chosen();
  themePick.addEventListener('change', () => {
    if (themePick.value === 'system') store.remove(window.loopchatTheme.key);
    else store.set(window.loopchatTheme.key, themePick.value);
    window.loopchatTheme.apply();
  });
}

const composer = new Composer({
  form: $('composer'),
  input: ui.input,
  send: $('send'),
  attachBtn: $('attach'),
  fileInput: $('file-input'),
  previews: $('attach-previews'),
  error: $('composer-error'),
  dropZone: document.querySelector('.main'),
  dropOverlay: $('drop-overlay'),
  onSubmit: ({ text, files, previews }) => {
    store.remove(draftKey(state.session));
    return enqueue({ text, files, previews });
  },
});

// ---------------------------------------------------------------- start

function start() {
  performance.mark('loopchat:start');
  registerServiceWorker();
  setUpInstallPrompt({ root: $('install-prompt'), text: $('install-text'), accept: $('install-accept'), dismiss: $('install-dismiss') });
  // boot.js took #token= out of the address bar, and the relay redirects a
  // legacy ?token= into the fragment; never leave one in the address bar regardless.
  const u = new URL(location.href);
  if (u.searchParams.has('token')) {
    u.searchParams.delete('token');
    history.replaceState(null, '', u.pathname + u.search + u.hash);
  }
  outbox.sweep();
  const key = sessionFromUrl() || DEFAULT_SESSION;
  openSession(key, { push: false }).then(() => {
    if (!state.authFailed) {
      sessions.refresh();
      alerts.load();
    }
  });
  setInterval(() => {
    if (document.visibilityState === 'visible' && state.connected) refreshLiveStatus();
  }, LIVE_STATUS_EVERY);
  composer.focus();
}

/** How often the sidebar's "N windows · M runs" line is refreshed while visible. */
const LIVE_STATUS_EVERY = 5000;

/**
 * The relay's live counts in the sidebar: windows are the open event
 * streams (this one included), runs the turns in flight in every session.
 * A failure just hides the line; the banner reports a relay that is down.
 */
async function refreshLiveStatus() {
  try {
    const s = await api.status();
    const c = s.connections.byKind;
    const windows = c.sse + c.websocket + c.shell;
    const runs = s.runsInFlight;
    const failing = (s.checks && s.checks.failing) || 0;
    // Failing checks only: a healthy relay's line stays short.
    ui.liveStatus.textContent = `${windows} ${windows === 1 ? 'window' : 'windows'} · ${runs} ${runs === 1 ? 'run' : 'runs'}`
      + (failing ? ` · ${failing} failing ${failing === 1 ? 'check' : 'checks'}` : '');
    const checks = s.checks ? ` · checks ${s.checks.ok} ok, ${s.checks.failing} failing, ${s.checks.running} running` : '';
    ui.liveStatus.title = `relay up ${s.uptimeSecs} s · ${s.sessions} sessions · alert journal ${s.journal.entries} entries${checks}`;
    ui.liveStatus.hidden = false;
  } catch {
    ui.liveStatus.hidden = true;
  }
}

start();
