#!/usr/bin/env bash
# Install llama-cpp-python's OpenAI-compatible server, the real counterpart of tests/backends/test_llama_cpp_server.py.
# PyPI has only its source (a C++ build of several minutes on 2 cores), so the built wheel is kept under
# .cache/wheels (or $KEYE_AGENT_WHEEL_CACHE) and a second run installs it in seconds. Idempotent; prints what it did.
# scripts/test.sh starts this in the background while the other suites run, then runs the llama.cpp suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
PY=.venv/bin/python
CACHE="${KEYE_AGENT_WHEEL_CACHE:-.cache/wheels}"
start=$(date +%s)
if "$PY" -c "import llama_cpp, llama_cpp.server, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
  echo "setup_llama_server: llama-cpp-python $VERSION already installed"
  exit 0
fi
mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  echo "setup_llama_server: building llama-cpp-python $VERSION from source (once; cached in $CACHE)"
  # a portable CPU build with nothing but the library: no native-CPU tuning (the wheel may move between
  # machines), no examples, tools, tests or curl
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF" \
    .venv/bin/pip wheel -q --no-deps -w "$CACHE" "llama-cpp-python==$VERSION" 2>&1 | grep -v "^WARNING: Location" || true
  wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1 || true)
  [ -n "$wheel" ] || { echo "setup_llama_server: the build made no wheel" >&2; exit 1; }
fi
.venv/bin/pip install -q -c constraints-cpu.txt "${wheel}[server]" 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import llama_cpp.server"
echo "setup_llama_server: llama-cpp-python $VERSION ready in $(( $(date +%s) - start )) s"
