#!/usr/bin/env bash
# Re-measures every figure in docs/benchmarks.md in ONE run on this machine,
# release builds throughout, and keeps each step's raw output:
#
#   bash scripts/bench-all.sh [OUT_DIR]        # default target/bench/results
#
# Steps (each bounded): HTTP (oha), store hot functions (criterion), agent
# streaming through the relay vs a direct llama.cpp call, notification
# fan-out to 1,000 subscribers, opening a 5,000-message session in Chromium,
# the shell's tunnel vs OpenSSH through one sshd, and the 10-minute soak
# (200 clients). About 20 minutes after the build. Needs what scripts/install-test-deps.sh
# installs, plus oha (cargo install oha --locked).
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/bench}
OUT=${1:-$CARGO_TARGET_DIR/results}
mkdir -p "$OUT"
SOAK_SECS=${SOAK_SECS:-600}
SOAK_CLIENTS=${SOAK_CLIENTS:-200}
failed=()

run() { # NAME COMMAND…: output to $OUT/NAME.txt and the terminal
  local name=$1; shift
  echo "==> $name: $*  ($(cut -d' ' -f1-3 /proc/loadavg))" | tee "$OUT/$name.txt"
  local start=$SECONDS
  if "$@" 2>&1 | tee -a "$OUT/$name.txt"; then
    echo "<== $name: ok in $((SECONDS - start)) s" | tee -a "$OUT/$name.txt"
  else
    echo "<== $name: FAILED in $((SECONDS - start)) s" | tee -a "$OUT/$name.txt"
    failed+=("$name")
  fi
}

{
  echo "date: $(date -u +%FT%TZ)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)')"
  echo "rustc: $(rustc --version)"
} | tee "$OUT/machine.txt"

cargo build --release --locked -p loopchat-relay -p loopchat-shell -p loopchat-tests --bins || exit 1
BIN=$CARGO_TARGET_DIR/release

# The tunnel's start-up includes the remote login shell reading the discovery
# file; a user with a plain /bin/sh shows the tunnel itself (docs/remote.md).
if [ "$(id -u)" = 0 ]; then
  id loopbench >/dev/null 2>&1 || useradd --create-home --shell /bin/sh loopbench
  # useradd leaves the password locked ("!"), and sshd without PAM refuses
  # even key logins to a locked account; "*" only rules out passwords.
  usermod -p '*' loopbench
fi
LOGIN=$(id -un); id loopbench >/dev/null 2>&1 && LOGIN=loopbench

run http bash scripts/bench-http.sh
run store cargo bench --locked -p loopchat-relay --bench store -- --warm-up-time 1 --measurement-time 3
run streaming cargo test --locked --release -p loopchat-tests --test openai_backend -- --ignored --nocapture --test-threads=1
run fanout cargo test --locked --release -p loopchat-tests --test notifications -- --ignored --nocapture --test-threads=1
run ui-open env LOOPCHAT_BIN="$BIN/loopchat" node tests/web/bench-open.mjs --runs 7
run tunnel env SHELL_BIN="$BIN/loopchat-shell" bash mac-shell/benches/tunnel_vs_openssh.sh --rounds 5 --login "$LOGIN"
run soak bash scripts/soak.sh "$SOAK_SECS" "$SOAK_CLIENTS"

echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
echo "all steps done; raw output in $OUT"
