#!/usr/bin/env bash
# Run a real OpenAI-compatible server (llama-cpp-python) on loopback, serving
# the tiny random-weight test model.  Runs in the foreground; stop it with
# SIGTERM/SIGINT (the exec'd python process is this script's PID).
#
# Usage: serve.sh [PORT]        (default: $LLAMA_PORT, else 8089)
# Environment:
#   LOOPCHAT_TEST_CACHE  cache dir (default: $HOME/.cache/loopchat-tests)
#   LLAMA_PORT           port when no argument is given
#   LLAMA_N_CTX          context size (default 4096: max_tokens 2000 + prompt fits)
#   LLAMA_MODEL          use this GGUF instead of the generated one
#   LLAMA_VERBOSE        True: llama.cpp load log + per-request timings on stderr
#   LLAMA_EXTRA_ALIASES  space-separated further names for the same model: the
#                        server lists them all in /v1/models and loads the one a
#                        request names (a multi-model server, for the model picker)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LOOPCHAT_TEST_CACHE:-$HOME/.cache/loopchat-tests}"
VENV="$CACHE/llama-venv"
PORT="${1:-${LLAMA_PORT:-8089}}"
N_CTX="${LLAMA_N_CTX:-4096}"

"$HERE/setup.sh"

if [[ -n "${LLAMA_MODEL:-}" ]]; then
  MODEL="$LLAMA_MODEL"
else
  # Model file name carries a hash of the generator, so editing
  # make_model.py regenerates it.
  GEN_HASH="$(sha256sum "$HERE/make_model.py" | cut -c1-12)"
  MODEL="$CACHE/models/tiny-llama-$GEN_HASH.gguf"
  if [[ ! -s "$MODEL" ]]; then
    mkdir -p "$CACHE/models"
    echo "[llama-serve] generating $MODEL" >&2
    "$VENV/bin/python" "$HERE/make_model.py" "$MODEL.tmp.$$"
    mv -f "$MODEL.tmp.$$" "$MODEL"
  fi
fi

echo "[llama-serve] serving $MODEL on http://127.0.0.1:$PORT (n_ctx=$N_CTX)" >&2
if [[ -n "${LLAMA_EXTRA_ALIASES:-}" ]]; then
  # Several models only go through a config file; the same settings as below.
  CONFIG="$(mktemp "${TMPDIR:-/tmp}/llama-config.XXXXXX.json")"
  "$VENV/bin/python" - "$CONFIG" "$MODEL" "$PORT" "$N_CTX" "${LLAMA_VERBOSE:-False}" $LLAMA_EXTRA_ALIASES <<'PY'
import json, sys
path, model, port, n_ctx, verbose, *extra = sys.argv[1:]
def entry(alias):
    return {"model": model, "model_alias": alias, "n_threads": 1, "n_threads_batch": 1,
            "n_ctx": int(n_ctx), "n_batch": 512, "verbose": verbose == "True"}
json.dump({"host": "127.0.0.1", "port": int(port), "interrupt_requests": False,
           "models": [entry(a) for a in ["tiny-llama", *extra]]}, open(path, "w"))
PY
  exec "$VENV/bin/python" -m llama_cpp.server --config_file "$CONFIG"
fi
exec "$VENV/bin/python" -m llama_cpp.server \
  --model "$MODEL" \
  --model_alias tiny-llama \
  --host 127.0.0.1 --port "$PORT" \
  --n_threads 1 --n_threads_batch 1 \
  --n_ctx "$N_CTX" --n_batch 512 \
  --interrupt_requests False \
  --verbose "${LLAMA_VERBOSE:-False}"
