"""The README's Python examples run as written: each ```python block is executed in a fresh interpreter.

The first block runs the real agent loop on the offline demo model (SmolLM2-135M, fetched once into .cache/models,
as `make demo` does); the sandbox block runs in the real Docker engine that `make test` starts.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)


def _block(marker: str) -> str:
    """The one example that uses ``marker`` (other sections add their own blocks, tested beside their code)."""
    [block] = [b for b in BLOCKS if marker in b]
    return block


def test_the_readme_has_its_examples():
    assert "load_model" in BLOCKS[0] and _block("DockerSandbox")


def test_python_api_example_runs_as_written(tmp_path):
    proc = _run(BLOCKS[0], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = proc.stdout.strip().splitlines()[-1].split()[0]
    assert status in {"completed", "max_steps", "max_errors", "max_tokens"}, proc.stdout
    assert (tmp_path / "run.jsonl").is_file()


@pytest.mark.docker
def test_sandbox_example_runs_as_written(tmp_path):
    proc = _run(_block("DockerSandbox"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "10"
