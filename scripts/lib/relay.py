"""Starts a relay for the Python benchmarks by the one readiness rule of
every launcher (CONTRIBUTING.md): ready once it has printed its URL line on
stdout; then `loopchat info --json` names the port and the token (not the
URL line, whose fragment carries the token).

    from relay import start_relay
    proc, port, token = start_relay(binary, home, {"RUST_LOG": "warn"})
"""

import json
import os
import subprocess
import threading


def start_relay(binary, home, extra_env=None, args=()):
    env = dict(os.environ, LOOPCHAT_HOME=home, RUST_LOG="warn")
    for k in ("LOOPCHAT_URL", "LOOPCHAT_TOKEN", "LOOPCHAT_AGENT", "LOOPCHAT_PORT"):
        env.pop(k, None)
    env.update(extra_env or {})
    proc = subprocess.Popen([binary, "serve", "--home", home, "--port", "0", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the relay exited before it listened (status {proc.wait()})")
    # Keep draining stdout so that the relay never blocks on a full pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    out = subprocess.run([binary, "info", "--json", "--home", home], env=env,
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    if d.get("pid") != proc.pid:
        raise SystemExit(f"loopchat info names pid {d.get('pid')}, not the relay started ({proc.pid})")
    return proc, d["port"], d["token"]
