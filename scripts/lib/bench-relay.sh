# Sourced by the scripts that drive one relay (benchmarks, soak, the
# schemathesis run). It gives them a private home in a temporary directory
# (removed on exit, the relay killed if it still runs) and starts the relay
# on a free port, by the one readiness rule of every launcher (CONTRIBUTING.md):
# ready once it has printed its URL line; then `loopchat info --json` names
# the port and the token.
#
#   source scripts/lib/bench-relay.sh
#   bench_relay_start "$BIN" [VAR=value …]   # sets RELAY_PID, RELAY_URL, RELAY_PORT, RELAY_TOKEN
#
# Defines WORK (the temporary directory), HOME_DIR (the relay's home) and
# "$WORK/relay.log" (its stderr, at RUST_LOG=warn).

# Sockets on both ends, plus the relay's own files.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d)
HOME_DIR=$WORK/home
RELAY_PID=
bench_relay_cleanup() {
  if [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; then
    kill -KILL "$RELAY_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap bench_relay_cleanup EXIT

bench_relay_start() {
  local bin=$1 line
  shift
  local fifo=$WORK/stdout
  mkfifo "$fifo"
  # A private home and the echo agent whatever the caller's environment
  # says; env execs the relay, so $! is the relay's pid.
  env -u LOOPCHAT_AGENT -u LOOPCHAT_PORT -u LOOPCHAT_URL -u LOOPCHAT_TOKEN \
    LOOPCHAT_HOME="$HOME_DIR" RUST_LOG=warn "$@" "$bin" serve --port 0 >"$fifo" 2>"$WORK/relay.log" &
  RELAY_PID=$!
  exec 3<"$fifo"
  if ! read -r -t 30 line <&3; then
    echo "the relay did not start:" >&2; cat "$WORK/relay.log" >&2; exit 1
  fi
  cat <&3 >/dev/null &   # keep draining the relay's stdout
  # Not from the URL line, which carries the token in its fragment.
  read -r RELAY_URL RELAY_PORT RELAY_TOKEN < <(
    env -u LOOPCHAT_URL -u LOOPCHAT_TOKEN "$bin" info --json --home "$HOME_DIR" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["baseUrl"], d["port"], d["token"])'
  ) || true
  if [ -z "${RELAY_TOKEN:-}" ]; then
    echo "loopchat info --json named no relay:" >&2; cat "$WORK/relay.log" >&2; exit 1
  fi
}
