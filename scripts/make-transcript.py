#!/usr/bin/env python3
"""Writes a pi-format session store with one session of N messages.

usage: make-transcript.py HOME KEY N [LINE_BYTES]
Used by the HTTP benchmarks (100k messages ≈ 25 MB, like the measurement of
the Node implementation) and by the web UI's large-session tests.
"""
import json, os, sys, uuid

home, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
pad = int(sys.argv[4]) if len(sys.argv) > 4 else 250
sessions = os.path.join(home, "sessions")
os.makedirs(sessions, mode=0o700, exist_ok=True)
index_path = os.path.join(sessions, "sessions.json")
index = json.load(open(index_path)) if os.path.exists(index_path) else {}
sid = str(uuid.UUID(int=len(index) + 1))
index[key] = {"sessionId": sid, "updatedAt": 1_700_000_000_000 + n, "thinkingLevel": "off"}
filler = "lorem ipsum dolor sit amet " * 20
with open(os.path.join(sessions, sid + ".jsonl"), "w") as f:
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        head = f"message {i} "
        text = head + filler[: max(0, pad - 150 - len(head))]
        line = {
            "type": "message",
            "id": str(uuid.UUID(int=(1 << 64) + i)),
            "timestamp": "2026-01-01T00:00:00.000Z",
            "message": {"role": role, "content": text, "timestamp": 1_767_225_600_000 + i},
        }
        f.write(json.dumps(line, separators=(",", ":")) + "\n")
with open(index_path, "w") as f:
    json.dump(index, f)
