#!/usr/bin/env bash
# Shell start → chat on screen when the shell must start the relay (issue 14,
# goal ≤ 1 s): no relay runs, `loopchat-shell --session bench`. One home for
# all runs, its relay stopped after each: run 1 is a first start (cold WebKit
# cache, new store), the others a start after the relay was stopped (a reboot,
# "Stop relay"), with the window's web cache warm.
# Phases from the shell's own log timestamps, against the moment it was spawned:
#   relay   — "local relay started" (the relay wrote a live relay.json)
#   loaded  — WebKit's load-finished of the chat page (HTML and modules run)
#   titled  — the chat page set its title for the session (app.js opened it)
# Needs a display: run under `xvfb-run -a dbus-run-session --`.
#
#   bash scripts/bench-shell-start.sh [RUNS]   (default 5; debug build unless SHELL_BIN is set)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
SHELL_BIN="${SHELL_BIN:-target/debug/loopchat-shell}"
# The relay the shell starts is the one next to it.
RELAY_BIN="$(dirname "$SHELL_BIN")/loopchat"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
WELCOME="$(sed -n 's/^pub const WELCOME_VERSION: u32 = \([0-9]*\);/\1/p' proto/src/lib.rs)"
[ -x "$SHELL_BIN" ] || { echo "build it first: cargo build --workspace --bins" >&2; exit 2; }
[ -n "${DISPLAY:-}" ] || { echo "no DISPLAY: run under xvfb-run -a dbus-run-session --" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
home="$out/home"
for i in $(seq 1 "$RUNS"); do
  mkdir -m 700 -p "$home/user-home"
  # A returning user (no welcome tour), remembered window size.
  printf '{"window":{"width":900.0,"height":640.0},"onboarding":{"welcomeVersion":%s,"relayVersion":"%s"}}' \
    "$WELCOME" "$VERSION" > "$home/shell.json"
  log="$out/shell-$i.log"
  t0="$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"
  LOOPCHAT_HOME="$home" HOME="$home/user-home" RUST_LOG=info NO_COLOR=1 \
    "$SHELL_BIN" --session bench 2>"$log" >/dev/null &
  pid=$!
  for _ in $(seq 1 300); do
    grep -q 'page title title=bench' "$log" && break
    sleep 0.05
  done
  kill -TERM "$pid"; wait "$pid" || true
  relay_pid="$(env -u LOOPCHAT_URL -u LOOPCHAT_TOKEN "$RELAY_BIN" info --json --home "$home" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])' 2>/dev/null || true)"
  if [ -n "$relay_pid" ]; then
    kill -TERM "$relay_pid" 2>/dev/null || true
    while kill -0 "$relay_pid" 2>/dev/null; do sleep 0.05; done
  fi
  python3 - "$t0" "$log" "$i" <<'PY'
import sys, re, datetime
t0 = datetime.datetime.fromisoformat(sys.argv[1].replace('Z', '+00:00'))
def at(pattern):
    for line in open(sys.argv[2], errors='replace'):
        if re.search(pattern, line):
            ts = datetime.datetime.fromisoformat(line.split()[0].replace('Z', '+00:00'))
            return round((ts - t0).total_seconds() * 1000)
    return None
print(f"run {sys.argv[3]}: relay={at('local relay started')} ms  loaded={at('page loaded url=http')} ms  titled={at('page title title=bench')} ms")
PY
  sleep 1
done
