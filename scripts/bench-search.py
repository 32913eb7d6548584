#!/usr/bin/env python3
"""Search benchmark (issue 17, item 2): 100 sessions, 1M messages in all.

  python3 scripts/bench-search.py [--bin target/release/loopchat]
                                  [--sessions 100] [--messages 1000000]
                                  [--queries 1000] [--keep HOME]

1. Writes a pi-format store (v3 files, sessions.json) of --sessions sessions
   holding --messages messages in all. Each message is 8-40 words drawn with
   a Zipf law (s = 1.1) from a 20,000-word vocabulary, so some words are in
   a third of all messages and most in a handful, as in real text.
2. Starts the relay on it and times the index build: from the start until
   `GET /webchat/search` answers `complete: true` (the catch-up read every
   transcript and committed). Reports the index's size on disk
   (`HOME/search`) next to the transcripts'.
3. Sends --queries searches over one keep-alive connection (limit 20, the
   page's default is 30): a third one word, a third two words, a third three,
   words drawn with the same law, so common and rare terms both come up. The
   latency is the client's, request sent to answer read; p50, p90, p99, max.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from relay import start_relay  # noqa: E402


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def zipf_sampler(n, s, rng):
    weights = [1 / (k ** s) for k in range(1, n + 1)]
    total = sum(weights)
    acc, cum = 0.0, []
    for w in weights:
        acc += w / total
        cum.append(acc)
    import bisect

    def draw():
        return min(n - 1, bisect.bisect_left(cum, rng.random()))

    return draw


def make_word(i):
    # Pronounceable, distinct, lowercase: what the tokenizer keeps whole.
    cons, vows = "bcdfghjklmnprstvz", "aeiou"
    out, k = [], i + 1
    while k:
        out.append(cons[k % len(cons)] + vows[(k // len(cons)) % len(vows)])
        k //= len(cons) * len(vows)
    return "".join(out) + "x"


def write_store(home, sessions, messages, rng, draw, vocab):
    sdir = os.path.join(home, "sessions")
    os.makedirs(sdir, mode=0o700)
    index = {}
    per = messages // sessions
    for s in range(sessions):
        sid = f"00000000-0000-4000-8000-{s:012d}"
        index[f"s{s}"] = {"sessionId": sid, "updatedAt": 1_700_000_000_000 + s, "thinkingLevel": "off"}
        with open(os.path.join(sdir, sid + ".jsonl"), "w") as f:
            f.write(json.dumps({"type": "session", "version": 3, "id": sid,
                                "timestamp": "2026-01-01T00:00:00.000Z", "cwd": "/"}) + "\n")
            parent = None
            for i in range(per):
                words = " ".join(vocab[draw()] for _ in range(rng.randint(8, 40)))
                role = "user" if i % 2 == 0 else "assistant"
                mid = f"{s:04x}{i:08x}"
                f.write(json.dumps({
                    "type": "message", "id": mid, "parentId": parent,
                    "timestamp": "2026-01-01T00:00:00.000Z",
                    "message": {"role": role, "content": [{"type": "text", "text": words}],
                                "timestamp": 1_767_225_600_000 + i},
                }, separators=(",", ":")) + "\n")
                parent = mid
    with open(os.path.join(sdir, "sessions.json"), "w") as f:
        json.dump(index, f)
    os.chmod(os.path.join(sdir, "sessions.json"), 0o600)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/loopchat")
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--keep", help="build the store here and keep it (reused if it exists)")
    args = ap.parse_args()

    rng = random.Random(17)
    vocab = [make_word(i) for i in range(20_000)]
    draw = zipf_sampler(len(vocab), 1.1, rng)

    tmp = None
    if args.keep:
        home = args.keep
    else:
        tmp = tempfile.mkdtemp(prefix="loopchat-bench-search-")
        home = os.path.join(tmp, "home")
    if not os.path.isdir(os.path.join(home, "sessions")):
        os.makedirs(home, mode=0o700, exist_ok=True)
        t = time.perf_counter()
        write_store(home, args.sessions, args.messages, rng, draw, vocab)
        print(f"store written in {time.perf_counter() - t:.1f} s: "
              f"{du(os.path.join(home, 'sessions')) / 1e6:.0f} MB of transcripts", flush=True)
    shutil.rmtree(os.path.join(home, "search"), ignore_errors=True)

    started = time.perf_counter()
    relay, port, token = start_relay(args.bin, home)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        headers = {"Authorization": f"Bearer {token}"}

        def search(q, limit=20):
            conn.request("GET", "/webchat/search?" + urllib.parse.urlencode({"q": q, "limit": limit}),
                         headers=headers)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                sys.exit(f"search {q!r}: {r.status} {body[:200]!r}")
            return json.loads(body)

        while not search(vocab[0])["complete"]:
            time.sleep(0.2)
        build = time.perf_counter() - started
        size = du(os.path.join(home, "search"))
        print(f"index built in {build:.1f} s (relay start included); "
              f"index {size / 1e6:.0f} MB for {du(os.path.join(home, 'sessions')) / 1e6:.0f} MB of transcripts",
              flush=True)

        queries = [" ".join(vocab[draw()] for _ in range(1 + i % 3)) for i in range(args.queries)]
        for q in queries[:50]:
            search(q)  # warm the page cache and the reader
        lat, hits = [], 0
        for q in queries:
            t = time.perf_counter()
            hits += len(search(q)["hits"])
            lat.append((time.perf_counter() - t) * 1000)
        print(f"{len(queries)} queries, {hits / len(queries):.1f} hits each on average: "
              f"p50 {pct(lat, 50):.1f} ms, p90 {pct(lat, 90):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
              f"max {max(lat):.1f} ms")
    finally:
        relay.terminate()
        relay.wait()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
