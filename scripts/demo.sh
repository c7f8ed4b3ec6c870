#!/usr/bin/env bash
# What `make demo` runs once the venv, the Docker engine and the sandbox image are ready: the demo task through the
# real agent loop, its trajectory printed. With KEYE_MODEL_PATH naming a Keye-VL-2.0 checkpoint directory
# (config.json, *.safetensors, tokenizer.json), that checkpoint drives the agent through KeyeBackend (on CUDA when
# torch sees a GPU, else the CPU); without it, the offline demo model (SmolLM2-135M on the CPU, fetched on first use).
# Extra arguments go to `keye-agent demo` (e.g. --task "..." --max-steps 6 --save run.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=.venv/bin/python
if [ -n "${KEYE_MODEL_PATH:-}" ]; then
  if [ ! -f "$KEYE_MODEL_PATH/config.json" ]; then
    echo "KEYE_MODEL_PATH=$KEYE_MODEL_PATH is not a checkpoint directory (no config.json in it)" >&2
    exit 2
  fi
  echo "demo: Keye checkpoint $KEYE_MODEL_PATH"
  exec "$PY" -m keye_agent.cli.main demo --model "$KEYE_MODEL_PATH" "$@"
fi
exec "$PY" -m keye_agent.cli.main demo "$@"
