#!/usr/bin/env bash
# Create .venv and install keye-agent with every extra needed by the tests, torch pinned to the CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first, alone: with it in place no other package can pull a CUDA build
# pip's own status decides (pipefail); the filter only hides the noise about this machine's local indexes
quiet() { grep -v "^WARNING: Location" || true; }
.venv/bin/pip install -q -c constraints-cpu.txt torch==2.13.0 2>&1 | quiet
.venv/bin/pip install -q -c constraints-cpu.txt -e '.[all,dev]' 2>&1 | quiet
.venv/bin/python -c "import torch, keye_agent; assert torch.__version__.startswith('2.13.0'), torch.__version__" 
echo "setup: venv ready in $(( $(date +%s) - start )) s"
