// @ts-check
// pi's tree in the conversation view: a message whose parent has other
// children of its role gets a ‹ i/n › switcher. Switching shows that branch
// (down to its newest entry) and appends nothing, as pi's /tree appends
// nothing to move its leaf; the next message sent goes on from there.

import { api } from './api.js';
import { el } from './util.js';
import { ui } from './page.js';
import { state, PAGE } from './state.js';

export class Branches {
  /** @param {Transcript} transcript */
  constructor(transcript) {
    this.transcript = transcript;
  }

  /** Fetches the session's tree, then decorates the messages shown. */
  async refresh(key) {
    let tree;
    try {
      tree = await api.tree(key);
    } catch {
      return;
    }
    if (key !== state.session || !tree.complete) return;
    state.tree = tree;
    this.decorate();
  }

  /** The ids of a message and its siblings of the same role, or null when it has none. */
  siblingsOf(id) {
    const tree = state.tree;
    if (!tree) return null;
    const me = tree.entries.find((e) => e.id === id);
    if (!me || !me.role) return null;
    const ids = tree.entries.filter((e) => e.role === me.role && e.parentId === me.parentId).map((e) => e.id);
    return ids.length > 1 ? ids : null;
  }

  /** The newest entry of the subtree under `id`: where that branch ends. */
  branchEnd(id) {
    const under = new Set([id]);
    let last = id;
    for (const e of state.tree.entries) {
      if (e.parentId && under.has(e.parentId)) { under.add(e.id); last = e.id; }
    }
    return last;
  }

  /** Gives each message shown that has siblings its switcher. */
  decorate() {
    for (const node of ui.messages.querySelectorAll('.msg[data-id]')) {
      if (!(node instanceof HTMLElement)) continue;
      node.querySelector('.branch-switch')?.remove();
      const ids = this.siblingsOf(node.dataset.id);
      if (!ids) continue;
      const i = ids.indexOf(node.dataset.id);
      const go = (j) => () => this.show(this.branchEnd(ids[j]));
      node.append(el('div', { class: 'branch-switch', role: 'group', 'aria-label': 'Branches' },
        el('button', { class: 'branch-prev', type: 'button', 'aria-label': 'Previous branch', text: '‹', disabled: i === 0, onclick: go(i - 1) }),
        el('span', { class: 'branch-pos', text: `${i + 1}/${ids.length}` }),
        el('button', { class: 'branch-next', type: 'button', 'aria-label': 'Next branch', text: '›', disabled: i === ids.length - 1, onclick: go(i + 1) })));
    }
  }

  /** Shows the path to `leaf`. */
  async show(leaf) {
    const key = state.session;
    const page = await api.historyTo(key, leaf, PAGE);
    if (key !== state.session) return;
    this.transcript.reset(page.messages || [], page.hasMore);
    state.viewLeaf = state.tree && leaf === state.tree.leafId ? null : leaf;
    this.decorate();
  }
}
