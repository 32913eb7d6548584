#!/usr/bin/env bash
# Runs every test: installs what they need, builds once (debug profile),
# then the Rust unit + end-to-end suites (real relay, real sshd, a real
# llama.cpp server), the desktop window under Xvfb and the web UI in
# Chromium. Exits non-zero when anything fails.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
results=()
failed=0
step() {
  local name=$1; shift
  echo "==> $name" >&2
  local start=$SECONDS
  if "$@"; then
    results+=("ok    $name ($((SECONDS - start)) s)")
  else
    results+=("FAIL  $name ($((SECONDS - start)) s)")
    failed=$((failed + 1))
  fi
}

bash scripts/install-test-deps.sh || { echo "installing test dependencies failed" >&2; exit 1; }

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo build" cargo build --workspace --all-targets --locked
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
# Under a virtual display and a session bus: the shell's window and
# desktop-notification tests need both, and nothing else minds.
step "cargo test" xvfb-run -a dbus-run-session -- cargo test --workspace --locked --no-fail-fast
# The HTTP API against its OpenAPI document (docs/openapi.json).
step "schemathesis" bash scripts/schemathesis.sh
# The instrumented build of the relay's whole dependency tree is most of a
# cold smoke run (12 of CI's 13 minutes): keep it with the other cached
# installs, so that a fresh clone rebuilds only the workspace's own crates.
export FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-${LOOPCHAT_TEST_CACHE:-$HOME/.cache/loopchat-tests}/fuzz-target}"
step "fuzz smoke" bash scripts/fuzz.sh 10
if [ -d tests/web/node_modules ]; then
  step "web UI (Chromium)" bash -c 'cd tests/web && node --test --test-concurrency=1 ./*.test.mjs'
  # The page's JSDoc types (webchat-dist/js/types.js), checked by the pinned TypeScript.
  step "web UI types (tsc)" bash -c 'cd tests/web && npx --no-install tsc -p .'
fi

echo
printf '%s\n' "${results[@]}"
passed=$(( ${#results[@]} - failed ))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
