#!/usr/bin/env python3
"""Checks benchmark (issue 13): the relay's cost of a check run, and drift.

  python3 scripts/bench-checks.py [--bin target/debug/loopchat] [--runs 200]
                                  [--checks 100] [--period 60] [--minutes 3]

1. Spawn -> alert visible: one check (`true`, alert = "always") run now
   `--runs` times through POST /webchat/checks/latency/run while an SSE
   stream listens. For each run: the time from sending the request to the
   alert arriving on the stream, minus the run's own durationMs (spawn to
   exit, as the relay measured it) = what the relay adds (request, history
   fsync, alert fsync, fan-out). p50/p99 of both.
2. Drift: `--checks` checks on `every = "<period>s"`, left to run for
   `--minutes`; from each check's kept runs, how late each run started
   against the schedule anchored at its first run (startedAt_k vs
   startedAt_0 + k * period). Max and p99 over all runs. A shorter --period
   exercises the same scheduler more often (documented with the figures).
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from relay import start_relay  # noqa: E402


def parse_ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Relay:
    def __init__(self, binary, config):
        self.home = tempfile.mkdtemp(prefix="bench-checks-")
        path = os.path.join(self.home, "config.toml")
        with open(path, "w") as f:
            f.write(config)
        os.chmod(path, 0o600)
        os.chmod(self.home, 0o700)
        self.proc, self.port, self.token = start_relay(binary, self.home)

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def request(self, method, path, body=None):
        c = self.conn()
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data or b"null")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        shutil.rmtree(self.home, ignore_errors=True)


def latency(binary, runs):
    relay = Relay(binary, '[[checks]]\nname = "latency"\ncommand = ["true"]\nevery = "1d"\nalert = "always"\n')
    arrivals = {}
    cond = threading.Condition()

    def listen():
        c = relay.conn()
        c.request("GET", "/webchat/events?notifySince=0", headers={"Authorization": f"Bearer {relay.token}"})
        r = c.getresponse()
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data:"):
                continue
            ev = json.loads(line[5:])
            if ev.get("type") == "notification":
                with cond:
                    arrivals[ev["notification"]["seq"]] = time.perf_counter()
                    cond.notify_all()

    threading.Thread(target=listen, daemon=True).start()
    time.sleep(0.5)  # the stream is open (its first bytes are not awaitable here)
    totals, overheads = [], []
    last_seq = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        status, body = relay.request("POST", "/webchat/checks/latency/run")
        assert status == 200, body
        with cond:
            cond.wait_for(lambda: any(s > last_seq for s in arrivals), timeout=30)
            seq = max(arrivals)
            t1 = arrivals[seq]
        last_seq = seq
        total = (t1 - t0) * 1000
        totals.append(total)
        overheads.append(total - body["run"]["durationMs"])
    relay.stop()
    return totals, overheads


def drift(binary, checks, period, minutes):
    config = "".join(
        f'[[checks]]\nname = "c{i}"\ncommand = ["true"]\nevery = "{period}s"\n' for i in range(checks)
    )
    relay = Relay(binary, config)
    time.sleep(minutes * 60 + 1)
    lates = []
    for i in range(checks):
        status, body = relay.request("GET", f"/webchat/checks/c{i}")
        assert status == 200, body
        starts = [parse_ts(r["startedAt"]) for r in body["runs"]]
        for k, s in enumerate(starts):
            lates.append(s - (starts[0] + k * period))
    relay.stop()
    return lates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/loopchat")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--checks", type=int, default=100)
    ap.add_argument("--period", type=int, default=60)
    ap.add_argument("--minutes", type=float, default=3)
    a = ap.parse_args()
    totals, overheads = latency(a.bin, a.runs)
    print(f"spawn -> alert visible, {a.runs} runs of `true`:")
    print(f"  total      p50 {pct(totals, 50):.1f} ms  p99 {pct(totals, 99):.1f} ms")
    print(f"  relay adds p50 {pct(overheads, 50):.1f} ms  p99 {pct(overheads, 99):.1f} ms"
          f"  (total minus the run's own durationMs)")
    lates = drift(a.bin, a.checks, a.period, a.minutes)
    print(f"drift, {a.checks} checks every {a.period}s for {a.minutes} min, {len(lates)} runs:")
    print(f"  start vs schedule: p50 {statistics.median(lates) * 1000:.1f} ms  "
          f"p99 {pct(lates, 99) * 1000:.1f} ms  max {max(lates) * 1000:.1f} ms  min {min(lates) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
