// @ts-check
// Sending: every message goes through the outbox (outbox.js: persisted,
// idempotent by its client uuid) and is shown as a pending bubble (#pending)
// until the relay stores it; edits and answers-again (branches) are sent
// straight away.
//
// A turn is sent with a streaming rpc, and the event stream shows it: two
// streams per turn, on purpose. The rpc's answer is used only to learn that
// the relay accepted the message (its first event) or refused it, and its
// end removes the item from the outbox: an item stays there, and is sent
// again with the same id, until the relay has answered for good, so a turn
// in flight when the relay restarts is run again (protocol.md, rpc `id`).
// What the transcript shows comes from the event stream only, so nothing
// appears twice; the one exception is a failure the event stream has not
// shown three seconds after the rpc reported it (a page that was loaded
// again after the run's end had passed).

import { api, rpcStream, ApiError } from './api.js';
import { Outbox } from './outbox.js';
import { pendingElement } from './render.js';
import { uploadType } from './composer.js';
import { uuid, store, contentText, el } from './util.js';
import { ui } from './page.js';
import { state } from './state.js';

export const THINKING_LEVELS = ['off', 'minimal', 'low', 'medium', 'high'];

/** How long the event stream has to show a failure the rpc reported. */
const FAILURE_GRACE_MS = 3000;

export class Sender {
  /**
   * @param {object} o
   * @param {Transcript} o.transcript
   * @param {Runs} o.runs
   * @param {() => void} o.reload  load the shown session again (it moved to another branch)
   */
  constructor({ transcript, runs, reload }) {
    this.transcript = transcript;
    this.runs = runs;
    this.reload = reload;
    this.outbox = new Outbox({
      send: (item) => this.send(item),
      onChange: () => this.render(),
    });
    /** @type {Map<string, HTMLElement>} outbox item id → its pending bubble */
    this.pendingNodes = new Map();
  }

  /** The pending bubbles of the shown session, in order, with their state. */
  render() {
    const outbox = this.outbox;
    const items = outbox.forSession(state.session).filter((i) => !(i.msgId && this.transcript.has(i.msgId)));
    const keep = new Set(items.map((i) => i.id));
    for (const [id, node] of this.pendingNodes) {
      if (!keep.has(id)) {
        node.remove();
        this.pendingNodes.delete(id);
      }
    }
    // nothing but the tracked bubbles lives in #pending
    for (const child of [...ui.pending.children]) {
      if (![...this.pendingNodes.values()].includes(/** @type {HTMLElement} */ (child))) child.remove();
    }
    this.transcript.atBottomChange(() => {
      for (const item of items) {
        let node = this.pendingNodes.get(item.id);
        if (!node) {
          node = pendingElement(item);
          this.pendingNodes.set(item.id, node);
        }
        ui.pending.append(node); // keeps order
        const status = node.querySelector('.msg-status');
        node.classList.toggle('failed', item.state === 'failed');
        node.querySelector('.msg-actions')?.remove();
        if (item.state === 'failed') {
          status.textContent = `Not sent: ${item.error || 'the relay refused it.'}`;
          node.append(el('div', { class: 'msg-actions' },
            el('button', { class: 'btn btn-small retry-btn', type: 'button', text: 'Retry', onclick: () => this.retryPending(item.id) }),
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

  /** Removes the pending bubbles (another session is shown). */
  clear() {
    for (const node of this.pendingNodes.values()) node.remove();
    this.pendingNodes.clear();
  }

  async retryPending(id) {
    const item = this.outbox.get(id);
    if (!item) return;
    // A refused message gets a new idempotency key: the first one is spent.
    const files = await this.outbox.filesOf(item);
    this.outbox.remove(id);
    this.outbox.add({ ...item, id: uuid(), state: undefined, error: undefined, fileCount: undefined }, files || []);
    this.outbox.flush();
  }

  /**
   * A user message from the relay is ours if an unmatched outbox item has the same text.
   * @param {Message} msg
   */
  match(msg) {
    const text = contentText(msg.content);
    const item = this.outbox.forSession(state.session).find((i) => !i.msgId && i.state !== 'failed' && (i.text || '') === text);
    if (item) this.outbox.update(item.id, { msgId: msg.id });
  }

  /**
   * Queue a message to the shown session, with the composer's thinking
   * level and model, and send it when the relay can be reached.
   * @param {{text: string, files?: File[], previews?: string[], attachments?: AttachmentRef[]}} message
   */
  enqueue({ text, files = [], previews = [], attachments = [] }) {
    /** @type {OutboxItem} */
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
      this.pendingNodes.set(item.id, pendingElement({ ...item, previews }));
    }
    this.outbox.add({ ...item }, files);
    this.transcript.jumpToLatest();
    this.render();
    this.outbox.flush();
  }

  /**
   * Uploads the files of an item not uploaded yet (each upload is recorded
   * in the outbox, so a retry goes on from there).
   * @param {OutboxItem} item
   * @returns {Promise<AttachmentRef[]>}
   */
  async upload(item) {
    const done = (item.attachments || []).length;
    const attachments = [...(item.attachments || [])];
    if (done >= (item.fileCount || 0)) return attachments;
    const files = await this.outbox.filesOf(item);
    if (files === null) throw new Error('its files are no longer there (they were not kept for this page)');
    const types = state.info && state.info.attachments ? state.info.attachments.types : undefined;
    for (let i = done; i < files.length; i++) {
      const file = files[i];
      const res = await api.uploadAttachment(file, uploadType(file, types) || file.type);
      attachments.push({ id: res.id, url: res.url, mimeType: res.mimeType, name: file.name || undefined });
      this.outbox.update(item.id, { attachments });
    }
    return attachments;
  }

  /**
   * Send one outbox item. Resolves 'sent' once the relay has accepted it (its
   * first event, or its answer), 'offline' when the relay cannot be reached,
   * 'failed' when the relay refused it. The rpc keeps running afterwards; its
   * end removes the item from the outbox.
   * @param {OutboxItem} item
   * @returns {Promise<SendResult>}
   */
  send(item) {
    const outbox = this.outbox;
    return new Promise((resolve) => {
      let settled = false;
      /** @param {SendResult} r */
      const settle = (r) => {
        if (!settled) {
          settled = true;
          resolve(r);
        }
        this.render();
      };
      /** @type {string | null} */
      let runId = null;
      (async () => {
        let attachments;
        try {
          attachments = await this.upload(item);
        } catch (err) {
          if ((err instanceof ApiError && err.offline) || state.authFailed) return settle('offline');
          outbox.update(item.id, { state: 'failed', error: `attachment upload failed: ${err.message}` });
          outbox.settle(item.id);
          return settle('failed');
        }
        /** @type {RpcRequest} */
        const body = { text: item.text, session: item.session, id: item.id };
        if (item.parentId) body.parentId = item.parentId;
        if (item.thinking && THINKING_LEVELS.includes(item.thinking)) body.thinking = item.thinking;
        if (attachments.length) body.attachments = attachments.map((a) => (a.name ? { id: a.id, name: a.name } : { id: a.id }));
        if (item.model) body.model = item.model;
        this.render();
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
          if (item.parentId && item.session === state.session) this.reload();
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
              const id = runId;
              setTimeout(() => {
                if (state.connected && item.session === state.session) this.runs.failUnlessEnded(id, err.message);
              }, FAILURE_GRACE_MS);
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

  /**
   * A turn on another branch (pi's tree): the edited text as a new child of
   * the edited message's parent, or the user message answered again. The
   * conversation is then the new branch, so the session is loaded again.
   * @param {{editOf?: Message, regenerate?: string}} what
   */
  async branch({ editOf, regenerate }) {
    const session = state.session;
    /** @type {RpcRequest} */
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
    if (state.session === session) await this.reload();
  }
}
