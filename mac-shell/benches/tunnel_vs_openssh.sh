#!/usr/bin/env bash
# Side-by-side benchmark: loopchat-shell's in-process tunnel vs OpenSSH's
# `ssh -N -L`, in ONE run, through the SAME sshd (a throwaway one on a
# loopback port, as in the tests).
#
#   mac-shell/benches/tunnel_vs_openssh.sh [--rounds N] [--bytes SIZE] [--pings N] [--login USER]
#
# --login USER logs into the sshd as USER (default: yourself). Our tunnel
# reads the discovery file with `cat` through an exec channel, which runs
# the remote user's shell and its rc files (Debian's bash sources ~/.bashrc
# for commands run by sshd); `ssh -N` runs no shell. A heavy ~/.bashrc (a
# `pyenv init`, say) shows up in our time to first byte only: log in as a
# user with a plain shell to see the tunnel itself.
#
# Measures
#   1. time to first byte: from process start to the first byte echoed back
#      through the tunnel (cold start: TCP, key exchange, auth, and for us
#      the remote discovery read; OpenSSH is given the port by hand);
#   2. throughput of SIZE (default 1G) with iperf3, both directions;
#   3. round trip of 64 bytes through the tunnel (echo server), median/p99.
#
# Uses the release build (builds it if missing): target/release/loopchat-shell.
# Needs: openssh-server, openssh-client, iperf3, python3.
set -euo pipefail

ROUNDS=10
BYTES=1G
PINGS=5000
LOGIN=$(id -un)
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --bytes) BYTES=$2; shift 2 ;;
    --pings) PINGS=$2; shift 2 ;;
    --login) LOGIN=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHELL_BIN=${SHELL_BIN:-$ROOT/target/release/loopchat-shell}
if [ ! -x "$SHELL_BIN" ]; then
  (cd "$ROOT" && cargo build --release -p loopchat-shell)
fi
for tool in /usr/sbin/sshd ssh ssh-keygen iperf3 python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/loopchat-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
mkdir -p "$WORK/home/.ssh"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/id_ed25519"
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
SSH_PORT=$(free_port)
/usr/sbin/sshd -D -e -f /dev/null -o Port="$SSH_PORT" -o ListenAddress=127.0.0.1 \
  -o HostKey="$WORK/host_key" -o AuthorizedKeysFile="$WORK/authorized_keys" -o PidFile=none \
  -o StrictModes=no -o UsePAM=no -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
  -o PermitRootLogin=prohibit-password -o AllowTcpForwarding=yes -o LogLevel=ERROR \
  2>"$WORK/sshd.log" &
PIDS+=($!)
echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1-2 "$WORK/host_key.pub")" > "$WORK/known_hosts"
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$SSH_PORT),1)" 2>/dev/null && break
  sleep 0.05
done

# The "remote" services: an echo server and an iperf3 server, each named by
# a discovery file the tunnel reads over SSH (as it reads the relay's).
ECHO_PORT=$(free_port)
python3 - "$ECHO_PORT" <<'EOF' &
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(128)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
PIDS+=($!)
IPERF_PORT=$(free_port)
iperf3 -s -p "$IPERF_PORT" -B 127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
for name in echo iperf; do
  port=$ECHO_PORT; [ $name = iperf ] && port=$IPERF_PORT
  printf '{"version":1,"pid":%d,"port":%d,"baseUrl":"http://127.0.0.1:%d/webchat/","token":"bench","startedAt":"2025-01-01T00:00:00Z","store":"-"}' \
    $$ "$port" "$port" > "$WORK/$name.json"
done
sleep 0.3
# Another login user must be able to read the discovery files and sshd (as
# that user) the authorized_keys.
chmod a+rx "$WORK"; chmod a+r "$WORK"/*.json "$WORK/authorized_keys"

export BENCH_LOGIN=$LOGIN BENCH_WORK=$WORK BENCH_SHELL=$SHELL_BIN BENCH_SSH_PORT=$SSH_PORT BENCH_ECHO_PORT=$ECHO_PORT \
  BENCH_IPERF_PORT=$IPERF_PORT BENCH_ROUNDS=$ROUNDS BENCH_BYTES=$BYTES BENCH_PINGS=$PINGS
python3 - <<'EOF'
import json, os, socket, statistics, subprocess, sys, time

W = os.environ["BENCH_WORK"]; SHELL = os.environ["BENCH_SHELL"]
SSH_PORT = int(os.environ["BENCH_SSH_PORT"]); ECHO = int(os.environ["BENCH_ECHO_PORT"])
IPERF = int(os.environ["BENCH_IPERF_PORT"]); ROUNDS = int(os.environ["BENCH_ROUNDS"])
BYTES = os.environ["BENCH_BYTES"]; PINGS = int(os.environ["BENCH_PINGS"])
USER = os.environ["BENCH_LOGIN"]
ENV = dict(os.environ, HOME=f"{W}/home", RUST_LOG="warn")
ENV.pop("SSH_AUTH_SOCK", None)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def ours(discovery):
    """Start `loopchat-shell tunnel --json`; returns (process, local port)."""
    p = subprocess.Popen([SHELL, "tunnel", "--json", "--remote", f"{USER}@127.0.0.1:{SSH_PORT}",
                          "--identity", f"{W}/id_ed25519", "--known-hosts", f"{W}/known_hosts",
                          "--remote-discovery", f"{W}/{discovery}.json"],
                         stdout=subprocess.PIPE, stderr=open(f"{W}/tunnel.err", "w"), env=ENV, text=True)
    line = p.stdout.readline()
    if not line:
        sys.exit("loopchat-shell tunnel failed:\n" + open(f"{W}/tunnel.err").read())
    url = json.loads(line)["localUrl"]
    return p, int(url.split(":")[2].split("/")[0])

def openssh(remote_port):
    """Start `ssh -N -L`; returns (process, local port) without waiting."""
    lp = free_port()
    p = subprocess.Popen(["ssh", "-N", "-F", "/dev/null", "-L", f"{lp}:127.0.0.1:{remote_port}",
                          "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
                          "-o", f"UserKnownHostsFile={W}/known_hosts", "-o", "StrictHostKeyChecking=yes",
                          "-i", f"{W}/id_ed25519", "-p", str(SSH_PORT), f"{USER}@127.0.0.1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return p, lp

def echo_once(port, deadline):
    """Connects (retrying while refused) and gets one byte echoed."""
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), 5)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.sendall(b"x")
            b = c.recv(1)
            c.close()
            if b == b"x":
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("no echo")
        time.sleep(0.001)

def stop(p):
    p.terminate()
    try: p.wait(5)
    except subprocess.TimeoutExpired: p.kill(); p.wait()

def ttfb(kind):
    t0 = time.monotonic()
    if kind == "loopchat":
        p, port = ours("echo")
    else:
        p, port = openssh(ECHO)
    echo_once(port, t0 + 20)
    dt = time.monotonic() - t0
    stop(p)
    return dt

def iperf(port, reverse):
    args = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-n", BYTES, "-J"]
    if reverse: args.append("-R")
    out = json.loads(subprocess.check_output(args, text=True))
    return out["end"]["sum_received"]["bits_per_second"] / 8 / 2**20  # MiB/s

def rtt(port):
    c = socket.create_connection(("127.0.0.1", port), 5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"p" * 64
    samples = []
    for i in range(PINGS + 200):
        t = time.perf_counter()
        c.sendall(msg)
        got = 0
        while got < 64:
            got += len(c.recv(64 - got))
        if i >= 200:
            samples.append((time.perf_counter() - t) * 1e6)
    c.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]

results = {}
# 1. Time to first byte, interleaved so both see the same machine load.
ours_t, ssh_t = [], []
for _ in range(ROUNDS):
    ours_t.append(ttfb("loopchat")); ssh_t.append(ttfb("openssh"))
results["ttfb_ms"] = (statistics.median(ours_t) * 1e3, statistics.median(ssh_t) * 1e3)

# 2. Throughput and 3. latency, each through a fresh tunnel of each kind.
p1, port1 = ours("iperf"); p2, port2 = openssh(IPERF)
time.sleep(1.5)
up = (iperf(port1, False), iperf(port2, False))
down = (iperf(port1, True), iperf(port2, True))
stop(p1); stop(p2)
p1, port1 = ours("echo"); p2, port2 = openssh(ECHO)
echo_once(port1, time.monotonic() + 20); echo_once(port2, time.monotonic() + 20)
lat_ours = rtt(port1); lat_ssh = rtt(port2)
stop(p1); stop(p2)

def row(name, a, b, better):
    ratio = a / b if b else float("nan")
    print(f"{name:<34} {a:>12.2f} {b:>12.2f} {ratio:>8.2f}x   ({better})")

ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
print(f"\nloopchat-shell tunnel vs {ssh_version}, same sshd on 127.0.0.1:{SSH_PORT}")
print(f"rounds={ROUNDS} bytes={BYTES} pings={PINGS} login={USER}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}\n")
print(f"{'':<34} {'loopchat':>12} {'openssh':>12} {'ratio':>9}")
row("time to first byte, median (ms)", *results["ttfb_ms"], "lower is better; goal <= 0.5x")
row("throughput upload (MiB/s)", *up, "higher is better; goal >= 1.0x")
row("throughput download -R (MiB/s)", *down, "higher is better; goal >= 1.0x")
row("64-byte round trip, median (us)", lat_ours[0], lat_ssh[0], "lower is better; goal <= 1.05x")
row("64-byte round trip, p99 (us)", lat_ours[1], lat_ssh[1], "lower is better")
print("\nraw ttfb ms loopchat:", [round(x * 1e3, 1) for x in ours_t])
print("raw ttfb ms openssh: ", [round(x * 1e3, 1) for x in ssh_t])
EOF
