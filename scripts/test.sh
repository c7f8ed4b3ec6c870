#!/usr/bin/env bash
# What `make test` runs after the venv exists: engine and image set-up (timed), then pytest over every suite, with
# a per-suite timing table printed at the end (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
if [ -f scripts/setup_docker.sh ]; then
  bash scripts/setup_docker.sh
  t1=$(date +%s); echo "setup: docker engine ready in $(( t1 - t0 )) s"
  .venv/bin/python -m keye_agent.sandboxes build
  echo "setup: sandbox image ready in $(( $(date +%s) - t1 )) s"
fi
t2=$(date +%s)
bash scripts/fetch_qwen3_template.sh >/dev/null  # the public template the chat-template tests compare against
echo "setup: Qwen3 chat template ready in $(( $(date +%s) - t2 )) s"
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
