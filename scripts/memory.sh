#!/usr/bin/env bash
# Memory of one session with large messages (issue 12, item 7): a release
# relay (echo agent), 60 turns of 900 KB in one session, then the session
# opened once (/webchat/info). Prints the relay's VmRSS before and after.
# docs/benchmarks.md ("Memory with large messages") records a run.
#
#   bash scripts/memory.sh [turns] [kib]          # defaults: 60 900
#
# Environment: CARGO_TARGET_DIR (default target/bench); LOOPCHAT_BIN to
# measure another binary (e.g. a build of an older commit) without building.
set -euo pipefail
cd "$(dirname "$0")/.."
TURNS=${1:-60}
KIB=${2:-900}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/bench}
if [ -z "${LOOPCHAT_BIN:-}" ]; then
  cargo build --release -p loopchat-relay --bin loopchat >&2
  LOOPCHAT_BIN=$CARGO_TARGET_DIR/release/loopchat
fi

WORK=$(mktemp -d)
RELAY_PID=
cleanup() {
  if [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; then kill -KILL "$RELAY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/home"
mkfifo "$WORK/stdout"
LOOPCHAT_HOME=$WORK/home RUST_LOG=warn "$LOOPCHAT_BIN" serve --port 0 >"$WORK/stdout" 2>"$WORK/relay.log" &
RELAY_PID=$!
disown  # no "Killed" line when the trap stops it
# The URL line comes once the relay listens.
head -n1 "$WORK/stdout" >/dev/null
cat "$WORK/stdout" >/dev/null &

# Not from the URL line, whose fragment carries the token.
INFO=$(env -u LOOPCHAT_URL -u LOOPCHAT_TOKEN "$LOOPCHAT_BIN" info --json --home "$WORK/home")
timeout 600 python3 - "$INFO" "$RELAY_PID" "$TURNS" "$KIB" <<'PY'
import json, sys, time, urllib.request
info, pid, turns, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
d = json.loads(info)
base, token = f"http://127.0.0.1:{d['port']}", d["token"]

def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS")

def call(path, body=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)

filler = "lorem ipsum dolor sit amet " * (kib * 1024 // 27)
before = rss_mib()
started = time.monotonic()
peak = before
for i in range(turns):
    call("/webchat/rpc", {"text": f"turn {i}: {filler}", "session": "big"})
    peak = max(peak, rss_mib())
took = time.monotonic() - started
info = call("/webchat/info?session=big&limit=5")
assert len(info["initialMessages"]) == 5
after = rss_mib()
print(f"{turns} turns of {kib} KB in one session ({took:.1f} s): "
      f"VmRSS {before:.1f} MiB before, {after:.1f} MiB after, {peak:.1f} MiB highest between turns")
PY
