#!/usr/bin/env bash
# Installs what the test suites need, idempotently: Debian packages (browser,
# sshd, Xvfb, WebKitGTK for the shell, a notification daemon), the npm
# packages of the browser tests and the pinned pi agent, and the cached llama.cpp server and
# schemathesis venvs.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  chromium                                   # web UI tests (playwright-core drives it)
  openssh-server openssh-client              # tunnel tests against a real sshd
  xvfb xauth imagemagick x11-utils           # the shell's window test + screenshots (xwininfo)
  libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libxdo-dev
  pkg-config
  dbus dbus-x11 dunst libdbus-1-dev          # desktop notifications under Xvfb
  iperf3                                     # tunnel throughput benchmark
  python3-fusepy                             # faults.rs: a FUSE file system whose fsync fails (tests/support/failfs.py)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -f tests/web/package-lock.json ]; then
  if [ ! -d tests/web/node_modules ] || [ tests/web/package-lock.json -nt tests/web/node_modules/.package-lock.json ]; then
    echo "==> npm ci (tests/web)" >&2
    (cd tests/web && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

# The real pi agent (pinned in tests/pi/package-lock.json) for the interop suites.
if [ ! -d tests/pi/node_modules ] || [ tests/pi/package-lock.json -nt tests/pi/node_modules/.package-lock.json ]; then
  echo "==> npm ci (tests/pi)" >&2
  (cd tests/pi && npm ci --no-audit --no-fund --loglevel=error)
fi

# The real MCP servers (pinned in tests/mcp/package-lock.json) for the MCP suite.
if [ ! -d tests/mcp/node_modules ] || [ tests/mcp/package-lock.json -nt tests/mcp/node_modules/.package-lock.json ]; then
  echo "==> npm ci (tests/mcp)" >&2
  (cd tests/mcp && npm ci --no-audit --no-fund --loglevel=error)
fi

bash scripts/schemathesis.sh --install-only

if [ "${LOOPCHAT_SKIP_LLAMA:-0}" != "1" ]; then
  bash tests/support/llama/setup.sh
fi
