#!/usr/bin/env bash
# /webchat/info on a 100k-entry transcript: linear vs branched (pi's tree,
# an abandoned branch of 5 entries after every 10 live ones; see
# make-transcript.py). Cold = the first request after a restart (the tail
# walked on disk); warm = p50/p99 of 500 sequential keep-alive requests.
#
#   bash scripts/bench-branched.sh              # release build
#   PROFILE=debug bash scripts/bench-branched.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
if [[ $PROFILE == release ]]; then cargo build --release -p loopchat-relay >&2; else cargo build -p loopchat-relay >&2; fi
BIN=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE/loopchat
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_relay() { # HOME → sets PID PORT TOKEN
  local home=$1 fifo
  fifo=$(mktemp -u "$WORK/fifo.XXXXXX")
  mkfifo "$fifo"
  LOOPCHAT_HOME=$home RUST_LOG=warn "$BIN" serve >"$fifo" 2>>"$WORK/relay.log" &
  PID=$!
  read -r line <"$fifo"
  cat "$fifo" >/dev/null &
  PORT=$(sed -E 's#.*127.0.0.1:([0-9]+)/.*#\1#' <<<"$line")
  TOKEN=$(cat "$home/token")
}
stop_relay() { kill "$PID"; wait "$PID" 2>/dev/null || true; }

warm() { # session → "p50 p99" in ms
  python3 - "$PORT" "$TOKEN" "$1" <<'PY'
import http.client, sys, time
port, token, session = sys.argv[1], sys.argv[2], sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", int(port))
times = []
for _ in range(500):
    t = time.perf_counter()
    c.request("GET", f"/webchat/info?session={session}", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print("%.3f %.3f" % (times[250], times[494]))
PY
}

H=$WORK/home; mkdir -p "$H"
python3 scripts/make-transcript.py "$H" linear 100000
python3 scripts/make-transcript.py "$H" branched 100000 250 10
echo "| transcript | size | cold first /webchat/info, ms (5 restarts: min / median) | warm p50 / p99, ms | messages shown |"
echo "|---|---|---|---|---|"
for s in linear branched; do
  colds=()
  for _ in 1 2 3 4 5; do
    start_relay "$H"
    colds+=("$(curl -s -o "$WORK/info.json" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" \
      "http://127.0.0.1:$PORT/webchat/info?session=$s" | awk '{printf "%.2f", $1*1000}')")
    shown=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["initialMessages"]))' "$WORK/info.json")
    w=$(warm "$s")
    stop_relay
  done
  sorted=$(printf '%s\n' "${colds[@]}" | sort -n)
  size=$(du -h "$H/sessions/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["sessionId"])' "$H/sessions/sessions.json" "$s").jsonl" | cut -f1)
  echo "| $s | $size | $(sed -n 1p <<<"$sorted") / $(sed -n 3p <<<"$sorted") | ${w/ / \/ } | $shown |"
done
