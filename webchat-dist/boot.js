// Starts the session's /info request while the app's modules are still
// loading (a plain script, run before them): opening a session then waits for
// the slower of the two, not for both in turn. app.js takes the answer over.
(function () {
  'use strict';
  try {
    var key = new URL(location.href).searchParams.get('session') || 'main';
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(key)) return;
    var url = 'info?session=' + encodeURIComponent(key) + '&limit=50';
    window.__loopchatBoot = {
      key: key,
      limit: 50,
      response: fetch(url, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } }),
    };
    // an unreachable relay is handled by app.js; do not report it as unhandled here
    window.__loopchatBoot.response.catch(function () {});
  } catch (e) {
    /* app.js fetches on its own */
  }
})();
