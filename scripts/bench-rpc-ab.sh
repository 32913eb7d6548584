#!/usr/bin/env bash
# Two relay binaries side by side in one run: durable /webchat/rpc turns/s
# (echo agent, c=16 on one session, 5 s windows), the binaries alternating
# round by round so that the machine's drift hits both alike. Each window
# starts a fresh relay with a fresh home.
#
#   bash scripts/bench-rpc-ab.sh OLD_BIN NEW_BIN [ROUNDS]   # needs oha
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BIN NEW_BIN [ROUNDS]" >&2; exit 2; }
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked" >&2; exit 1; }
old=$1 new=$2 rounds=${3:-5}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

window() { # BIN → turns/s and p99 ms of one 5 s window
  local bin=$1 home fifo pid port token out
  home=$(mktemp -d "$WORK/home.XXXXXX")
  fifo=$home.out
  mkfifo "$fifo"
  env -u LOOPCHAT_AGENT -u LOOPCHAT_PORT -u LOOPCHAT_URL -u LOOPCHAT_TOKEN \
    LOOPCHAT_HOME="$home" RUST_LOG=warn "$bin" serve --port 0 >"$fifo" 2>>"$WORK/relay.log" &
  pid=$!
  exec 3<"$fifo"
  read -r -t 30 _ <&3 || { echo "$bin did not start" >&2; cat "$WORK/relay.log" >&2; exit 1; }
  cat <&3 >/dev/null &
  read -r port token < <(env -u LOOPCHAT_URL -u LOOPCHAT_TOKEN "$bin" info --json --home "$home" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["port"], d["token"])')
  out=$(oha -c 16 -z 5s --no-tui --output-format json -m POST -H "Authorization: Bearer $token" \
        -d '{"text":"bench","session":"one"}' "http://127.0.0.1:$port/webchat/rpc")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  exec 3<&-
  echo "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
codes = d["statusCodeDistribution"]
assert list(codes) == ["200"], codes
print("%.0f %.2f" % (d["summary"]["requestsPerSec"], d["latencyPercentiles"]["p99"] * 1000))'
}

echo "| round | old turns/s (p99 ms) | new turns/s (p99 ms) |"
echo "|---|---|---|"
for r in $(seq 1 "$rounds"); do
  read -r a ap < <(window "$old")
  read -r b bp < <(window "$new")
  echo "| $r | $a ($ap) | $b ($bp) |"
done
