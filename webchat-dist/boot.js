// @ts-check
// Runs first, as a plain script before the app's modules.
//
// 1. The token. The page is opened as /webchat/#token=…: a fragment is never
//    sent to any server. It is moved into localStorage, which only this
//    origin (scheme, host and port) can read, and out of the address bar and
//    history at once. A new #token= replaces the stored one (after a rotation).
//    No cookie is used: cookies are scoped by host, not port, so one for
//    127.0.0.1 would go to every other local web server.
// 2. The session's /info request starts while the modules are still loading:
//    opening a session then waits for the slower of the two, not for both in
//    turn. app.js takes the answer over.
// 3. The theme: light, dark or the system's (the default, followed live), set
//    as data-theme on <html> before the first paint, so that no page flashes
//    the wrong one. The sidebar's picker stores the choice (loopchat.theme).
(function () {
  'use strict';
  var TOKEN_KEY = 'loopchat.token';
  /** The window, with what this script puts on it for the modules. */
  var page = /** @type {PageWindow} */ (window);
  var THEME_KEY = 'loopchat.theme';

  var systemDark = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  function chosenTheme() {
    try {
      var t = JSON.parse(localStorage.getItem(THEME_KEY));
      return t === 'light' || t === 'dark' ? t : 'system';
    } catch (e) {
      return 'system';
    }
  }
  function applyTheme() {
    var t = chosenTheme();
    document.documentElement.dataset.theme = t === 'system' ? (systemDark && systemDark.matches ? 'dark' : 'light') : t;
  }
  applyTheme();
  if (systemDark && systemDark.addEventListener) systemDark.addEventListener('change', applyTheme);
  page.loopchatTheme = { key: THEME_KEY, chosen: chosenTheme, apply: applyTheme };

  /** Take #token= out of the address bar; store it and return it (null: none given). */
  function takeFragmentToken() {
    var token = null;
    try {
      var hash = location.hash.replace(/^#/, '');
      if (!hash) return null;
      var params = new URLSearchParams(hash);
      if (!params.has('token')) return null;
      token = params.get('token') || null;
      params.delete('token');
      var rest = params.toString();
      history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    } catch (e) {
      return null;
    }
    if (token) {
      try {
        localStorage.setItem(TOKEN_KEY, token);
      } catch (e) {
        // Storage disabled: this page keeps the token in memory (api.js reads it).
        page.__loopchatMemoryToken = token;
      }
    }
    return token;
  }

  var token = takeFragmentToken();
  if (!token) {
    try { token = localStorage.getItem(TOKEN_KEY); } catch (e) { /* none stored */ }
  }
  // A new URL pasted into this tab differs only in its fragment, which the
  // browser treats as a same-page jump: start over with its token.
  window.addEventListener('hashchange', function () {
    if (takeFragmentToken()) location.reload();
  });
  try {
    var key = new URL(location.href).searchParams.get('session') || 'main';
    // The protocol's rule (proto's SESSION_KEY_PATTERN; a relay test keeps it equal).
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(key)) return;
    // 50: the app's page size (js/state.js PAGE); a different one would make
    // the app ask again (history.test.mjs counts one /info per opening).
    var url = 'info?session=' + encodeURIComponent(key) + '&limit=50';
    var headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    page.__loopchatBoot = {
      key: key,
      limit: 50,
      response: fetch(url, { credentials: 'omit', cache: 'no-store', headers: headers }),
    };
    // an unreachable relay is handled by app.js; do not report it as unhandled here
    page.__loopchatBoot.response.catch(function () {});
  } catch (e) {
    /* app.js fetches on its own */
  }
})();
