#!/usr/bin/env bash
# Idempotent, non-interactive installer for the llama-cpp-python test server.
#
# Creates ${LOOPCHAT_TEST_CACHE:-$HOME/.cache/loopchat-tests}/llama-venv with
# llama-cpp-python[server] (compiled from source, CPU only, lean build), gguf
# and numpy.  The compiled wheel is kept in the cache dir so a deleted venv is
# rebuilt in seconds.  When the venv's stamp file matches the pinned versions
# below, the script does nothing and exits 0 straight away.
#
# Environment:
#   LOOPCHAT_TEST_CACHE  cache dir (default: $HOME/.cache/loopchat-tests)
#   PYTHON               interpreter used to create the venv (default: python3)
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION="0.3.16"
GGUF_VERSION="0.17.1"
NUMPY_VERSION="2.2.6"
# Lean CPU-only build: no llava/mtmd, no tests/examples/tools, no OpenMP, no
# host-specific (-march=native) code so a cached wheel can't SIGILL elsewhere.
LLAMA_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
# Pins for the server's runtime dependencies (keeps the server's HTTP/SSE
# behaviour reproducible across venv rebuilds).
SERVER_PINS=(
  "fastapi==0.121.2"
  "starlette==0.49.3"
  "uvicorn==0.38.0"
  "sse-starlette==3.0.3"
  "starlette-context==0.3.6"
  "pydantic==2.12.4"
  "pydantic-settings==2.12.0"
  "PyYAML==6.0.3"
  "Jinja2==3.1.6"
  "diskcache==5.6.3"
  "typing_extensions==4.15.0"
)

log() { printf '[llama-setup] %s\n' "$*" >&2; }

CACHE="${LOOPCHAT_TEST_CACHE:-$HOME/.cache/loopchat-tests}"
VENV="$CACHE/llama-venv"
STAMP="$VENV/.loopchat-stamp"
PY="${PYTHON:-python3}"

want_stamp() {
  printf 'llama-cpp-python==%s\ngguf==%s\nnumpy==%s\ncmake_args=%s\npins=%s\npython=%s\n' \
    "$LLAMA_CPP_PYTHON_VERSION" "$GGUF_VERSION" "$NUMPY_VERSION" \
    "$LLAMA_CMAKE_ARGS" "${SERVER_PINS[*]}" "$("$PY" -c 'import sys; print(sys.version.split()[0])')"
}

venv_ok() {
  [[ -x "$VENV/bin/python" && -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(want_stamp)" ]]
}

if venv_ok; then
  exit 0
fi

mkdir -p "$CACHE"
# Serialise concurrent setups (parallel test runs) on one lock.
exec 9>"$CACHE/.setup.lock"
if ! flock -n 9; then
  log "another setup is running; waiting for $CACHE/.setup.lock"
  flock 9
fi
if venv_ok; then
  log "venv completed by another process: $VENV"
  exit 0
fi

ARGS_HASH="$(printf '%s' "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
WHEEL_DIR="$CACHE/wheels/llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION-$ARGS_HASH"
wheel_file() { compgen -G "$WHEEL_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION-*.whl" | head -n1; }

if [[ -z "$(wheel_file || true)" ]]; then
  log "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION wheel from source (takes ~6 min on 2 cores)"
  log "CMAKE_ARGS=$LLAMA_CMAKE_ARGS"
  BUILD_VENV="$CACHE/.build-venv"
  rm -rf "$BUILD_VENV" "$WHEEL_DIR.tmp"
  "$PY" -m venv "$BUILD_VENV"
  start=$(date +%s)
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" \
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
  FORCE_CMAKE=1 \
    "$BUILD_VENV/bin/python" -m pip wheel --disable-pip-version-check --no-input \
      --no-deps --no-binary llama-cpp-python --no-cache-dir \
      --wheel-dir "$WHEEL_DIR.tmp" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >&2
  rm -rf "$WHEEL_DIR"
  mv "$WHEEL_DIR.tmp" "$WHEEL_DIR"
  rm -rf "$BUILD_VENV"
  log "wheel built in $(( $(date +%s) - start ))s: $(wheel_file)"
else
  log "using cached wheel $(wheel_file)"
fi
WHEEL="$(wheel_file)"

log "creating venv $VENV"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
log "installing llama-cpp-python[server], gguf, numpy into the venv"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
  "llama-cpp-python[server] @ file://$WHEEL" \
  "gguf==$GGUF_VERSION" "numpy==$NUMPY_VERSION" "${SERVER_PINS[@]}" >&2
"$VENV/bin/python" -c 'import llama_cpp, llama_cpp.server.app, gguf, numpy; print("llama_cpp", llama_cpp.__version__)' >&2
want_stamp > "$STAMP"
log "done: $VENV"
