#!/usr/bin/env bash
# Soak of the relay (release build, echo agent): CLIENTS concurrent clients
# mixing turns, streamed turns, info/history/session reads and notifications
# for DURATION, plus long-lived SSE subscribers that must see every event.
# Fails on any error or when the relay's RSS grows (the rule is printed).
# docs/benchmarks.md ("Soak") records a run.
#
#   bash scripts/soak.sh [duration] [clients]      # defaults: 600s 200
#   bash scripts/soak.sh 60s 50                    # a quick one
#
# Environment: CARGO_TARGET_DIR (default target/bench), SOAK_SESSIONS (40),
# SOAK_ECHO_DELAY_MS (1: the echo agent streams word by word, like a model),
# SOAK_JSON (JSON summary; default $CARGO_TARGET_DIR/soak.json), SOAK_ARGS
# (more flags for the soak binary, e.g. "--think-ms 50").
#
# Bounded: after the build, it ends within DURATION + about 60 s (the soak
# drains for at most 20 s and checks the subscribers for at most 15 s; the
# relay gets 15 s to stop), and a hard timeout backs that up.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-600s}
CLIENTS=${2:-200}
SESSIONS=${SOAK_SESSIONS:-40}
ECHO_DELAY_MS=${SOAK_ECHO_DELAY_MS:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/bench}
JSON=${SOAK_JSON:-$CARGO_TARGET_DIR/soak.json}

case $DURATION in
  *ms) secs=$(( ${DURATION%ms} / 1000 + 1 )) ;;
  *s) secs=${DURATION%s} ;;
  *m) secs=$(( ${DURATION%m} * 60 )) ;;
  *h) secs=$(( ${DURATION%h} * 3600 )) ;;
  *) secs=$DURATION; DURATION=${DURATION}s ;;
esac
[[ $secs =~ ^[0-9]+$ ]] || { echo "duration must be whole seconds, minutes or hours (600s, 10m)" >&2; exit 2; }

cargo build --release -p loopchat-relay --bin loopchat -p loopchat-tests --bin soak >&2
BIN=$CARGO_TARGET_DIR/release/loopchat
SOAK=$CARGO_TARGET_DIR/release/soak

source scripts/lib/bench-relay.sh
bench_relay_start "$BIN" LOOPCHAT_ECHO_DELAY_MS="$ECHO_DELAY_MS"
echo "relay $RELAY_PID: $RELAY_URL  (home $HOME_DIR, echo delay ${ECHO_DELAY_MS} ms)" >&2
echo "$(date +%T) load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

status=0
# shellcheck disable=SC2086 # SOAK_ARGS is a list of flags
timeout -k 10 $(( secs + 75 )) "$SOAK" --home "$HOME_DIR" --loopchat "$BIN" \
  --clients "$CLIENTS" --duration "$DURATION" --sessions "$SESSIONS" \
  --json "$JSON" ${SOAK_ARGS:-} || status=$?

echo "$(date +%T) soak finished (exit status $status)"
echo "on disk: $(du -sh "$HOME_DIR/sessions" | cut -f1) of transcripts, notifications journal $(du -h "$HOME_DIR/notifications.jsonl" | cut -f1)"
# A clean stop: SIGTERM, then the relay's exit status.
kill -TERM "$RELAY_PID"
relay_status=0
for _ in $(seq 150); do kill -0 "$RELAY_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$RELAY_PID" 2>/dev/null; then
  echo "the relay did not stop within 15 s of SIGTERM" >&2; relay_status=1
else
  wait "$RELAY_PID" || relay_status=$?
fi
RELAY_PID=
echo "$(date +%T) relay stopped (exit status $relay_status); log: $(grep -c . "$WORK/relay.log" || true) lines at warn or above"
if [ -s "$WORK/relay.log" ]; then tail -n 20 "$WORK/relay.log"; fi
echo "JSON summary: $JSON"
[ "$status" -eq 0 ] && [ "$relay_status" -eq 0 ]
