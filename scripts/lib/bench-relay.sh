# Sourced by the benchmark scripts that drive one release relay. It gives
# them a private home in a temporary directory (removed on exit, the relay
# killed if it still runs) and starts the relay on a free port, ready once
# it has printed its URL line: the readiness rule of the test harness.
#
#   source scripts/lib/bench-relay.sh
#   bench_relay_start "$BIN" [VAR=value …]   # sets RELAY_PID, RELAY_URL (no token)
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
  # env execs the relay, so $! is the relay's pid.
  env LOOPCHAT_HOME="$HOME_DIR" RUST_LOG=warn "$@" "$bin" serve --port 0 >"$fifo" 2>"$WORK/relay.log" &
  RELAY_PID=$!
  exec 3<"$fifo"
  if ! read -r -t 30 line <&3; then
    echo "the relay did not start:" >&2; cat "$WORK/relay.log" >&2; exit 1
  fi
  cat <&3 >/dev/null &   # keep draining the relay's stdout
  # The URL line carries the token in its fragment: never print that part.
  RELAY_URL=${line#*: }
  RELAY_URL=${RELAY_URL%%#*}
}
