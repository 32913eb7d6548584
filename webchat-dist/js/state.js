// @ts-check
// The shown session: which one it is and what the relay said of it. One
// object, shared by the modules that show it (conversation.js), send to it
// (sending.js) and follow its runs (runs.js); only conversation.js switches
// it, and app.js marks a refused token.

/** @type {ShownSession} */
export const state = {
  session: null,
  info: null,
  viewLeaf: null,
  tree: null,
  connected: false,
  authFailed: false,
};

/** Messages per page of history (boot.js asks /info for as many). */
export const PAGE = 50;

/** The session shown when the URL names none. */
export const DEFAULT_SESSION = 'main';
