#!/usr/bin/env python3
"""Writes a pi-format (v3) session store with one session of N entries.

usage: make-transcript.py HOME KEY N [LINE_BYTES] [BRANCH_EVERY]
Used by the HTTP benchmarks (100k messages ≈ 25 MB, like the measurement of
the Node implementation) and by the web UI's large-session tests.

With BRANCH_EVERY=k (> 0) the file is a branched tree, as pi's /tree leaves
it: after every k entries of the live path comes an abandoned branch of k/2
entries off the same parent, and the live path goes on from that parent.
N counts every line but the header (live and abandoned).
"""
import json, os, sys, uuid

home, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
pad = int(sys.argv[4]) if len(sys.argv) > 4 else 250
every = int(sys.argv[5]) if len(sys.argv) > 5 else 0
sessions = os.path.join(home, "sessions")
os.makedirs(sessions, mode=0o700, exist_ok=True)
index_path = os.path.join(sessions, "sessions.json")
index = json.load(open(index_path)) if os.path.exists(index_path) else {}
sid = str(uuid.UUID(int=len(index) + 1))
index[key] = {"sessionId": sid, "updatedAt": 1_700_000_000_000 + n, "thinkingLevel": "off"}
filler = "lorem ipsum dolor sit amet " * 20


def entry(i, parent, live):
    role = "user" if i % 2 == 0 else "assistant"
    head = f"message {i} " if live else f"abandoned {i} "
    text = head + filler[: max(0, pad - 190 - len(head))]
    message = {"role": role, "content": [{"type": "text", "text": text}], "timestamp": 1_767_225_600_000 + i}
    if role == "assistant":
        message.update({"api": "loopchat", "provider": "loopchat", "model": "bench", "stopReason": "stop"})
    return {
        "type": "message",
        "id": f"{i:08x}",
        "parentId": parent,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "message": message,
    }


with open(os.path.join(sessions, sid + ".jsonl"), "w") as f:
    header = {"type": "session", "version": 3, "id": sid, "timestamp": "2026-01-01T00:00:00.000Z", "cwd": "/"}
    f.write(json.dumps(header, separators=(",", ":")) + "\n")
    parent, i, live_run = None, 0, 0
    while i < n:
        f.write(json.dumps(entry(i, parent, True), separators=(",", ":")) + "\n")
        parent, i, live_run = f"{i:08x}", i + 1, live_run + 1
        if every and live_run == every:
            live_run, p = 0, parent
            for _ in range(every // 2):
                if i >= n:
                    break
                f.write(json.dumps(entry(i, p, False), separators=(",", ":")) + "\n")
                p, i = f"{i:08x}", i + 1
with open(index_path, "w") as f:
    json.dump(index, f)
