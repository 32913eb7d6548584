#!/usr/bin/env bash
# HTTP benchmarks of the relay (release build, echo agent) with oha.
# Prints a markdown table of the figures; docs/benchmarks.md records a run.
#
#   bash scripts/bench-http.sh            # needs: cargo install oha --locked
#
# Loopback only; every load is bounded in requests or seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked" >&2; exit 1; }
cargo build --release -p loopchat-relay >&2
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/loopchat
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_relay() { # HOME → sets PID PORT TOKEN, STARTUP_MS
  local home=$1 fifo
  fifo=$(mktemp -u "$WORK/fifo.XXXXXX")
  mkfifo "$fifo"
  local t0; t0=$(date +%s%N)
  LOOPCHAT_HOME=$home RUST_LOG=warn "$BIN" serve >"$fifo" 2>>"$WORK/relay.log" &
  PID=$!
  read -r line <"$fifo"          # printed once the socket is listening
  STARTUP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  cat "$fifo" >/dev/null &
  # The scripts' readiness rule (CONTRIBUTING.md): the URL line, then
  # `loopchat info --json` for the port and the token.
  read -r PORT TOKEN < <(env -u LOOPCHAT_URL -u LOOPCHAT_TOKEN "$BIN" info --json --home "$home" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["port"], d["token"])')
  [ -n "$TOKEN" ] || { echo "loopchat info --json named no relay" >&2; exit 1; }
}
stop_relay() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
p50_ms() { python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["latencyPercentiles"]["p50"]*1000))'; }
p99_ms() { python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["latencyPercentiles"]["p99"]*1000))'; }
rps() { python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f" % d["summary"]["requestsPerSec"])'; }
ok_only() { python3 -c 'import json,sys; d=json.load(sys.stdin); s=d["statusCodeDistribution"]; assert list(s)==["200"], s' ; }

echo "| figure | value |"
echo "|---|---|"

# --- startup and idle RSS -------------------------------------------------
H=$WORK/idle; mkdir -p "$H"
start_relay "$H"; start1=$STARTUP_MS; stop_relay
start_relay "$H"; start2=$STARTUP_MS
echo "| startup to accepting (spawn → URL line printed), ms | $start1 (first start), $start2 (restart) |"
oha -n 10 --no-tui --output-format quiet -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/webchat/info" >/dev/null
echo "| idle RSS, MiB | $(awk "BEGIN{printf \"%.1f\", $(rss_kib $PID)/1024}") |"

# --- GET /webchat/ --------------------------------------------------------
out=$(oha -c 16 -z 10s --no-tui --output-format json "http://127.0.0.1:$PORT/webchat/")
echo "$out" | ok_only
echo "| GET /webchat/ c=16, req/s | $(echo "$out" | rps) |"
stop_relay

# --- /webchat/info at 1k / 10k / 100k messages ----------------------------
H=$WORK/info; mkdir -p "$H"
for n in 1000 10000 100000; do python3 scripts/make-transcript.py "$H" "s$n" "$n"; done
echo "| transcript sizes | $(du -h "$H"/sessions/*.jsonl | awk '{print $1}' | tr '\n' ' ')|"
start_relay "$H"
declare -A P50
for n in 1000 10000 100000; do
  out=$(oha -c 1 -n 3000 --no-tui --output-format json -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$PORT/webchat/info?session=s$n")
  echo "$out" | ok_only
  P50[$n]=$(echo "$out" | p50_ms)
  echo "| /webchat/info c=1, ${n} messages: p50 / p99 ms | ${P50[$n]} / $(echo "$out" | p99_ms) |"
done
echo "| /webchat/info p50 ratio 100k/1k | $(awk "BEGIN{printf \"%.2f\", ${P50[100000]}/${P50[1000]}}") |"
echo "| RSS after the info runs (3 transcripts open), MiB | $(awk "BEGIN{printf \"%.1f\", $(rss_kib $PID)/1024}") |"
stop_relay

# --- /webchat/rpc, durable, echo ------------------------------------------
H=$WORK/rpc; mkdir -p "$H"
start_relay "$H"
# 16 sessions: 16 clients, one session each, all at once.
loads=()
for i in $(seq 1 16); do
  oha -c 1 -z 10s --no-tui --output-format json -m POST -H "Authorization: Bearer $TOKEN" \
      -d "{\"text\":\"bench\",\"session\":\"s$i\"}" "http://127.0.0.1:$PORT/webchat/rpc" >"$WORK/rpc$i.json" &
  loads+=($!)
done
wait "${loads[@]}"
total=0
for i in $(seq 1 16); do ok_only <"$WORK/rpc$i.json"; total=$(( total + $(rps <"$WORK/rpc$i.json") )); done
echo "| /webchat/rpc durable, c=16 over 16 sessions, turns/s | $total |"
# one session, c=16, three windows to see whether it stays flat as it grows
for round in 1 2 3; do
  out=$(oha -c 16 -z 5s --no-tui --output-format json -m POST -H "Authorization: Bearer $TOKEN" \
        -d '{"text":"bench","session":"one"}' "http://127.0.0.1:$PORT/webchat/rpc")
  echo "$out" | ok_only
  echo "| /webchat/rpc durable, c=16 on one session, window $round, turns/s (p99 ms) | $(echo "$out" | rps) ($(echo "$out" | p99_ms)) |"
done
acked=0
for f in "$WORK"/rpc*.json; do acked=$(( acked + $(python3 -c 'import json,sys; print(json.load(sys.stdin)["statusCodeDistribution"].get("200",0))' <"$f") )); done
stored=$(python3 - "$H" <<'PY'
import json, sys, os
d = os.path.join(sys.argv[1], "sessions")
index = json.load(open(os.path.join(d, "sessions.json")))
n = 0
for i in range(1, 17):
    for line in open(os.path.join(d, index[f"s{i}"]["sessionId"] + ".jsonl")):
        n += json.loads(line)["message"]["role"] == "user"
print(n)
PY
)
echo "| c=16 over 16 sessions: turns acknowledged / user messages on disk | $acked / $stored |"
stop_relay
