# `make demo` and `make test` each do all set-up on a fresh machine: a venv in .venv with the CPU build of torch,
# the Docker engine (installed and started if missing) and the sandbox image (built locally if missing).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.keye-installed

.PHONY: setup docker test demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	@bash scripts/setup_venv.sh
	@touch $(STAMP)

docker: setup
	@bash scripts/setup_docker.sh
	@$(PY) -m keye_agent.sandboxes build

test: setup
	@bash scripts/test.sh

demo: docker
	@bash scripts/demo.sh

bench: setup
	@$(VENV)/bin/pip install -q -c constraints-cpu.txt -e '.[all,dev,bench]'

lint: setup
	@$(VENV)/bin/ruff check keye_agent tests benchmarks examples
	@python3 ../shared/tools/check_layers.py 2>/dev/null || true

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
