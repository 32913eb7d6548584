// @ts-check
// The welcome tour: Welcome → what loopchat does → (desktop: the CLI on PATH →
// notifications, with a real test alert) → Done. Served by the relay like the
// chat. Who shows it, and when:
// - the desktop shell opens welcome.html?desktop=1 when its settings say the
//   tour was not completed for this welcome version and relay version; it
//   reports what only it can see (is `loopchat` on PATH? is a notification
//   daemon reachable?) by calling window.loopchatDesktopStatus(…) every second,
//   and records completion itself when the page leaves for the chat;
// - a browser is sent here by app.js the first time it opens /webchat/ (and
//   after a version change); completion is kept in this origin's storage.
// Done and Skip both lead to the chat and both count as completed.

import { api } from './api.js';
import { store, WELCOME_DONE_KEY } from './util.js';

const params = new URL(location.href).searchParams;
const desktop = params.get('desktop') === '1';
const session = params.get('session');
const welcomeVersion = params.get('v') || '';
const relayVersion = params.get('relay') || '';
// The tag that lets the shell raise the test alert even while its window has
// the focus (it names it: the rule is the shell's).
const testTag = params.get('testTag');

const steps = [...document.querySelectorAll('[data-step]')].map((s) => /** @type {HTMLElement} */ (s)).filter((s) => desktop || !s.hasAttribute('data-desktop'));
const $ = (id) => document.getElementById(id);
const next = $('welcome-next');
const skip = $('welcome-skip');
let at = 0;

function show(i) {
  at = i;
  for (const s of document.querySelectorAll('[data-step]')) /** @type {HTMLElement} */ (s).hidden = s !== steps[i];
  const name = steps[i].dataset.step;
  $('welcome-progress').textContent = `${i + 1} of ${steps.length}`;
  document.title = `Welcome (${i + 1}/${steps.length}): ${name} — loopchat`;
  const last = i === steps.length - 1;
  next.textContent = last ? 'Open the chat' : 'Next';
  skip.hidden = last;
  if (name === 'notifications') $('test-alert').focus();
  else next.focus();
}

function chatUrl() {
  return session ? `./?session=${encodeURIComponent(session)}` : './';
}

function finish() {
  if (!desktop) store.set(WELCOME_DONE_KEY, `${welcomeVersion}:${relayVersion}`);
  location.replace(chatUrl());
}

next.addEventListener('click', () => (at === steps.length - 1 ? finish() : show(at + 1)));
skip.addEventListener('click', finish);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') finish();
});

$('test-alert').addEventListener('click', async () => {
  const result = $('test-result');
  result.textContent = 'Sending…';
  try {
    const sent = await api.notify({
      title: 'loopchat test alert',
      body: 'If you can read this on your desktop, notifications work.',
      tags: testTag ? [testTag] : [],
      session: session || undefined,
    });
    result.textContent = `Sent (alert #${sent.seq}). It is in the chat's alert panel too.`;
    next.focus();
  } catch (err) {
    result.textContent = `Could not send it: ${err.message}`;
  }
});

/**
 * Called by the shell with what it sees:
 * { cli: { host: string|null, path: string|null, error: string|null, install: string },
 *   daemon: { name: string|null, error: string|null } }.
 * cli.host is the remote host whose PATH was looked at (the shell shows a
 * relay there through its SSH tunnel), null for this machine.
 * Text only (textContent): nothing in it becomes markup.
 */
/** @type {PageWindow} */ (window).loopchatDesktopStatus = (/** @type {any} */ status) => {
  if (!status || typeof status !== 'object') return;
  const cli = status.cli || {};
  const cliStatus = $('cli-status');
  const where = typeof cli.host === 'string' ? `the PATH of ${cli.host}` : 'your PATH';
  if (typeof cli.path === 'string') {
    cliStatus.dataset.state = 'ok';
    cliStatus.textContent = `loopchat is on ${where}: ${cli.path}`;
    $('cli-install').hidden = true;
  } else if (typeof cli.error === 'string') {
    cliStatus.dataset.state = 'missing';
    cliStatus.textContent = `Cannot tell whether loopchat is on ${where} (${cli.error}).`;
    $('cli-install').hidden = true;
  } else {
    cliStatus.dataset.state = 'missing';
    cliStatus.textContent = `loopchat is not on ${where}.`;
    $('cli-command').textContent = String(cli.install || '');
    $('cli-install').hidden = false;
  }
  const daemon = status.daemon || {};
  const daemonStatus = $('daemon-status');
  if (typeof daemon.name === 'string') {
    daemonStatus.dataset.state = 'ok';
    daemonStatus.textContent = `Notification service reachable: ${daemon.name}.`;
  } else {
    daemonStatus.dataset.state = 'missing';
    daemonStatus.textContent = `No notification service answers${daemon.error ? ` (${daemon.error})` : ''}. Alerts still show in the chat's panel.`;
  }
};

show(0);
