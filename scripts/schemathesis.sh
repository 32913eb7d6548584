#!/usr/bin/env bash
# Property-based tests of the relay's HTTP API against its own OpenAPI
# document: starts a real relay (echo agent, private home, free port) and runs
# schemathesis against http://127.0.0.1:PORT/webchat/openapi.json with the
# token. Fails on any 5xx, any response that does not match the document
# (status, content type, headers, body schema), and any request the document
# calls valid that the relay refuses (or invalid that it accepts).
#
# schemathesis lives in a cached venv (installed only when missing):
#   ${LOOPCHAT_TEST_CACHE:-$HOME/.cache/loopchat-tests}/schemathesis-venv
# `--install-only` installs it and exits (scripts/install-test-deps.sh).
#
# Environment:
#   LOOPCHAT_BIN          the relay binary (default: target/debug/loopchat, built if missing)
#   SCHEMATHESIS_EXAMPLES examples per operation (default 30)
#   SCHEMATHESIS_SEED     random seed (default: fixed, so CI runs are reproducible)
#   SCHEMATHESIS_ARGS     extra arguments for `schemathesis run`
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
CACHE="${LOOPCHAT_TEST_CACHE:-$HOME/.cache/loopchat-tests}"
VENV="$CACHE/schemathesis-venv"
STAMP="$VENV/.loopchat-stamp"
PY="${PYTHON:-python3}"

log() { printf '[schemathesis] %s\n' "$*" >&2; }

want_stamp() {
  printf 'schemathesis==%s\npython=%s\n' "$SCHEMATHESIS_VERSION" \
    "$("$PY" -c 'import sys; print(sys.version.split()[0])')"
}

venv_ok() {
  [[ -x "$VENV/bin/schemathesis" && -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(want_stamp)" ]]
}

if ! venv_ok; then
  mkdir -p "$CACHE"
  # Serialise concurrent installs (parallel test runs) on one lock.
  exec 9>"$CACHE/.schemathesis.lock"
  flock 9
  if ! venv_ok; then
    log "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    want_stamp >"$STAMP"
  fi
  exec 9>&-
fi
[[ "${1:-}" == "--install-only" ]] && exit 0

BIN="${LOOPCHAT_BIN:-target/debug/loopchat}"
if [[ ! -x "$BIN" ]]; then
  log "building the relay"
  cargo build -p loopchat-relay --locked
fi

# A private home and the echo agent, by the scripts' one launcher.
source scripts/lib/bench-relay.sh
bench_relay_start "$BIN"
work=$WORK
relay_pid=$RELAY_PID
token=$RELAY_TOKEN
base="http://127.0.0.1:$RELAY_PORT"
log "relay on $base (pid $relay_pid)"

# Excluded operations, and why:
# - GET /webchat/events is a Server-Sent Events stream that stays open until
#   the client leaves: every valid request would only end at the request
#   timeout. (tests/tests/streaming.rs and core_http.rs cover it.)
# - GET /webchat/socket is a WebSocket upgrade, which schemathesis does not
#   speak: every request would be a plain GET, refused with 400.
# Per-operation allowances of checks are in scripts/schemathesis.toml, each
# with its reason.
config="$PWD/scripts/schemathesis.toml"
status=0
# Run from the scratch directory: schemathesis keeps a crash cache
# (.schemathesis/) in its working directory.
# shellcheck disable=SC2086
(cd "$work" && "$VENV/bin/schemathesis" --config-file "$config" run "$base/webchat/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --exclude-path /webchat/events \
  --exclude-path /webchat/socket \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" \
  --seed "${SCHEMATHESIS_SEED:-20240607}" \
  --generation-database none \
  --request-timeout 30 \
  --no-color \
  ${SCHEMATHESIS_ARGS:-}) || status=$?

# A panic or an error-level log line is a finding even when every answer
# looked right.
if grep -E '(panicked| ERROR )' "$work/relay.log" >&2; then
  log "the relay logged errors (above)"
  status=1
fi
if ! kill -0 "$relay_pid" 2>/dev/null; then
  log "the relay died during the run:"
  tail -n 50 "$work/relay.log" >&2
  status=1
fi
exit "$status"
