#!/usr/bin/env bash
# The owner's latency under a flood of half-open connections (issue 12,
# item 6): HOSTILE connections (default 1100, more than the relay's 1,024
# slots) trickle one header byte every TRICKLE and reconnect when cut, with
# no token, while the owner sends authenticated requests (a turn, then
# /webchat/info, alternately), each on a fresh connection, for DURATION.
# Prints p50/p99/max of the owner's requests. docs/benchmarks.md
# ("Half-open flood") records a run.
#
#   bash scripts/halfopen.sh [duration] [hostile] [trickle]   # defaults: 30s 1100 2s
#
# Environment: CARGO_TARGET_DIR (default target/bench), HALFOPEN_JSON (JSON
# summary; default $CARGO_TARGET_DIR/halfopen.json), HALFOPEN_ARGS (more
# flags for the halfopen binary, e.g. "--keep-alive"). The relay runs with
# its default limits (1,024 connections, 30 s header timeout).
#
# Bounded: after the build it ends within DURATION + about 90 s, and a hard
# timeout backs that up.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30s}
HOSTILE=${2:-1100}
TRICKLE=${3:-2s}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/bench}
JSON=${HALFOPEN_JSON:-$CARGO_TARGET_DIR/halfopen.json}
secs=${DURATION%s}
[[ $secs =~ ^[0-9]+$ ]] || { echo "duration must be whole seconds (30s)" >&2; exit 2; }

cargo build --release -p loopchat-relay --bin loopchat -p loopchat-tests --bin halfopen >&2
BIN=$CARGO_TARGET_DIR/release/loopchat
HALFOPEN=$CARGO_TARGET_DIR/release/halfopen

source scripts/lib/bench-relay.sh
bench_relay_start "$BIN"
echo "relay $RELAY_PID: $RELAY_URL" >&2
echo "$(date +%T) load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

status=0
# shellcheck disable=SC2086 # HALFOPEN_ARGS is a list of flags
timeout -k 10 $(( secs + 90 )) "$HALFOPEN" --home "$HOME_DIR" --hostile "$HOSTILE" \
  --trickle "$TRICKLE" --duration "$DURATION" --json "$JSON" ${HALFOPEN_ARGS:-} || status=$?
echo "$(date +%T) finished (exit status $status); relay log: $(grep -c . "$WORK/relay.log" || true) lines at warn or above"
if [ -s "$WORK/relay.log" ]; then tail -n 20 "$WORK/relay.log"; fi
kill -TERM "$RELAY_PID"
wait "$RELAY_PID" || true
RELAY_PID=
echo "JSON summary: $JSON"
[ "$status" -eq 0 ]
