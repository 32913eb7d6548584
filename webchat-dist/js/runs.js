// @ts-check
// The runs (turns) of the shown session, as its event stream tells them:
// the reply streaming in its bubble (#live), the run the Stop button stops,
// and what a failed run needs for its note and its Retry. One record per
// run, kept until the session is loaded again.
//
// The stored messages themselves go to the transcript (conversation.js
// hands them over); a run's bubble gives way to its stored reply, and a run
// that ended without one reaching the page leaves a placeholder in its place.

import { api } from './api.js';
import { liveElement, markFailed, thinkingBlock } from './render.js';
import { toolCard, handleToolEvent } from './tools.js';
import { contentText } from './util.js';
import { ui, announce, showError } from './page.js';
import { state } from './state.js';

/**
 * A run's reply while it streams.
 * @typedef {object} Bubble
 * @property {HTMLElement} node
 * @property {Text} textNode
 * @property {string} text
 * @property {Text | null} thinkingNode
 * @property {string} thinking
 */

/**
 * What the page knows of one run.
 * @typedef {object} Run
 * @property {string} id
 * @property {Bubble | null} bubble   its reply streaming in #live, while one is shown
 * @property {string | null} userText the text of the user's message that started it
 * @property {string | null} userMsgId that message's id
 * @property {string | null} error    why it failed (its run.end, or its rpc's answer)
 * @property {boolean} ended          its end was seen (or stood in for)
 */

const FAILED = 'The agent failed to answer.';

export class Runs {
  /**
   * @param {object} o
   * @param {Transcript} o.transcript
   * @param {(turn: {text: string, attachments: AttachmentRef[]}) => void} o.send  send a message again (Retry)
   */
  constructor({ transcript, send }) {
    this.transcript = transcript;
    this.send = send;
    /** @type {Map<string, Run>} in the order their bubbles were made */
    this.runs = new Map();
    /** @type {string | null} the run the Stop button stops */
    this.activeId = null;
    ui.stop.addEventListener('click', () => this.stop());
  }

  /** @param {string} id */
  record(id) {
    let run = this.runs.get(id);
    if (!run) {
      run = { id, bubble: null, userText: null, userMsgId: null, error: null, ended: false };
      this.runs.set(id, run);
    }
    return run;
  }

  /** How many replies are streaming. */
  get liveCount() {
    let n = 0;
    for (const run of this.runs.values()) if (run.bubble) n += 1;
    return n;
  }

  /** The streaming reply of a run, made if it has none. */
  bubble(id) {
    const run = this.record(id);
    if (!run.bubble) {
      const node = liveElement(id);
      const textNode = document.createTextNode('');
      node.querySelector('.stream-text').append(textNode);
      run.bubble = { node, textNode, text: '', thinkingNode: null, thinking: '' };
      // last in the map: the newest bubble is the one Stop falls back to
      this.runs.delete(id);
      this.runs.set(id, run);
      this.transcript.atBottomChange(() => ui.live.append(node));
    }
    return run.bubble;
  }

  /** Removes a run's bubble (its stored reply came, or it ended). */
  dropBubble(id) {
    const run = this.runs.get(id);
    if (run && run.bubble) {
      run.bubble.node.remove();
      run.bubble = null;
    }
  }

  /** @param {string | null} id */
  setActive(id) {
    this.activeId = id;
    ui.stop.hidden = !id;
    ui.app.classList.toggle('running', Boolean(id));
  }

  /** Shows a run in progress (a page opened while it runs). */
  resume(id) {
    this.bubble(id);
    this.setActive(id);
  }

  finish(id) {
    this.dropBubble(id);
    if (this.activeId === id) {
      // another run of this session may still be going (queued turns)
      let next = null;
      for (const run of this.runs.values()) if (run.bubble) next = run.id;
      this.setActive(next);
    }
    this.transcript.changed();
  }

  /** Forgets every run (the session is loaded again, or another one shown). */
  clear() {
    for (const run of this.runs.values()) if (run.bubble) run.bubble.node.remove();
    this.runs.clear();
    this.setActive(null);
  }

  async stop() {
    const id = this.activeId;
    if (!id) return;
    ui.stop.disabled = true;
    try {
      await api.abort(state.session, id);
    } catch (err) {
      showError(`Could not stop the reply: ${err.message}`);
    } finally {
      ui.stop.disabled = false;
    }
  }

  /**
   * Retry a failed turn: send the user's message that started it again
   * (text and images).
   * @param {string} messageId  the failed reply (or its placeholder)
   * @param {string} [runId]
   * @param {string | null} [userText]  the placeholder's word for what the user said
   */
  retry(messageId, runId, userText) {
    const run = runId ? this.runs.get(runId) : null;
    const userId = run && run.userMsgId;
    const user = (userId && this.transcript.byId.get(userId)) || this.transcript.previousUserText(messageId);
    const text = user ? contentText(user.content) : (userText || (run && run.userText) || '');
    const parts = user && Array.isArray(user.content) ? user.content : [];
    /** @type {AttachmentRef[]} */
    const attachments = parts
      .filter((p) => p && p.type === 'image' && typeof p.url === 'string')
      .map((p) => ({ id: p.url.split('/').pop(), url: p.url, mimeType: p.mimeType }));
    if (!text && attachments.length === 0) return;
    this.send({ text, attachments });
  }

  fail(id, errorText) {
    const run = this.runs.get(id);
    const bubble = run ? run.bubble : null;
    const storedId = this.transcript.assistantIdForRun(id);
    const text = errorText || FAILED;
    if (storedId) {
      this.transcript.setExtra(storedId, { error: text });
      const node = this.transcript.node(storedId);
      if (node) markFailed(node, text, () => this.retry(storedId, id));
      this.finish(id);
      return;
    }
    // Nothing stored for this run: keep what streamed so far as a failed turn.
    /** @type {Message} */
    const synthetic = {
      id: `run-failed:${id}`,
      role: 'assistant',
      content: bubble ? bubble.text : '',
      timestamp: new Date().toISOString(),
      stopReason: 'error',
    };
    const userText = (run && run.userText) || null;
    this.finish(id);
    if (this.transcript.has(synthetic.id)) return;
    this.transcript.add(synthetic, { runId: id, error: text, synthetic: true, userText });
  }

  /**
   * The rpc of a turn answered that it failed. The event stream shows that
   * too (its run.end), in order after the user's message; only when it has
   * not, a while later, is the failure shown from here.
   */
  failUnlessEnded(id, errorText) {
    const run = this.record(id);
    if (run.ended) return;
    run.ended = true;
    run.error = errorText;
    this.fail(id, errorText);
  }

  /** The user's message of a run was stored. */
  userMessage(id, msg) {
    const run = this.record(id);
    run.userText = contentText(msg.content);
    run.userMsgId = msg.id;
  }

  /**
   * A message of a run other than the user's was stored: it takes the place
   * of the run's bubble (and of a placeholder for it).
   * @param {string | null} id
   * @param {Message} msg
   */
  stored(id, msg) {
    const run = id ? this.runs.get(id) : null;
    /** @type {MessageExtra | undefined} */
    const extra = id ? { runId: id } : undefined;
    if (run && msg.stopReason === 'error' && run.error != null) extra.error = run.error;
    this.transcript.atBottomChange(() => {
      if (id) this.dropBubble(id);
      // a placeholder kept for a run is replaced by the real stored message
      if (id) {
        this.transcript.remove(`run-failed:${id}`);
        this.transcript.remove(`run-ended:${id}`);
      }
      this.transcript.add(msg, extra);
    });
    if (msg.role === 'assistant') announce(`Assistant: ${contentText(msg.content).slice(0, 200)}`);
  }

  /**
   * An event of a run other than a stored message: its start, its text and
   * thinking as they stream, its tool calls and its end.
   * @param {SessionEvent} ev
   */
  handle(ev) {
    switch (ev.type) {
      case 'run.start': {
        if (!ev.runId || this.transcript.assistantIdForRun(ev.runId)) return;
        this.bubble(ev.runId);
        this.setActive(ev.runId);
        break;
      }
      case 'delta': {
        if (!ev.runId || typeof ev.text !== 'string') return;
        const bubble = this.bubble(ev.runId);
        if (!this.activeId) this.setActive(ev.runId);
        this.transcript.atBottomChange(() => {
          bubble.text += ev.text;
          bubble.textNode.appendData(ev.text);
        });
        break;
      }
      case 'thinking': {
        if (!ev.runId || typeof ev.text !== 'string') return;
        const bubble = this.bubble(ev.runId);
        this.transcript.atBottomChange(() => {
          if (!bubble.thinkingNode) {
            const block = thinkingBlock('', true);
            bubble.node.querySelector('.msg-body').prepend(block);
            bubble.thinkingNode = document.createTextNode('');
            block.querySelector('.thinking-text').append(bubble.thinkingNode);
          }
          bubble.thinking += ev.text;
          bubble.thinkingNode.appendData(ev.text);
        });
        break;
      }
      case 'tool.start': {
        if (!ev.runId || typeof ev.callId !== 'string') return;
        // A backend that runs its own tools (pi) reports a call before its
        // stored message arrives: until then the card lives in the run's
        // bubble. The relay's own tool loop stores the call first.
        if (!document.querySelector(`.tool-card[data-call-id="${CSS.escape(ev.callId)}"]`)) {
          const bubble = this.bubble(ev.runId);
          if (!this.activeId) this.setActive(ev.runId);
          this.transcript.atBottomChange(() => {
            bubble.node.querySelector('.msg-body').append(toolCard({ id: ev.callId, name: ev.name, arguments: ev.args }));
          });
        }
        handleToolEvent(ev);
        break;
      }
      case 'run.end': {
        const id = ev.runId;
        if (!id) return;
        const run = this.record(id);
        run.ended = true;
        if (ev.state === 'error') {
          run.error = ev.error || FAILED;
          this.fail(id, ev.error);
          announce(`The agent failed: ${ev.error || ''}`);
        } else {
          if (run.bubble && !this.transcript.assistantIdForRun(id)) {
            // The run ended without a stored reply reaching us: keep its text.
            this.transcript.add({
              id: `run-ended:${id}`,
              role: 'assistant',
              content: run.bubble.text,
              timestamp: new Date().toISOString(),
              stopReason: ev.state === 'aborted' ? 'aborted' : undefined,
            }, { runId: id, synthetic: true });
          }
          this.finish(id);
        }
        if (this.activeId === id) this.setActive(null);
        break;
      }
      default:
        handleToolEvent(ev);
        break;
    }
  }
}
