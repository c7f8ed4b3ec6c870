"""The README's examples run as written: ```python blocks in a fresh interpreter, the command line's examples
through the real `keye-agent` command, and each shows what the README says it shows.

The first block runs the real agent loop on the offline demo model (SmolLM2-135M, fetched once into .cache/models,
as `make demo` does); the sandbox examples run in the real Docker engine that `make test` starts.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


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
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "get_weather {'city': 'Oslo'} -> 4 C, rain"  # what the README says the demo model does
    assert lines[-1].split()[0] in {"completed", "max_steps", "max_errors", "max_tokens"}, proc.stdout
    assert (tmp_path / "run.jsonl").is_file()
    assert "Loading weights" not in proc.stderr  # transformers' own bar stays out of the Python API
    assert "load_model(\"demo\")" in BLOCKS[0] and "keye:/path" not in BLOCKS[0]


def _cli_examples() -> list[str]:
    [block] = re.findall(r"Examples \(a test runs each line as written.*?```bash\n(.*?)```", README, re.S)
    return [ln for ln in block.replace("\\\n", " ").splitlines() if ln.strip()]


def _cli(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(line)
    assert argv[0] == "keye-agent"
    exe = str(Path(sys.executable).with_name("keye-agent"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([exe, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A working folder that sees the repository's examples/ as the README's commands expect."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


@pytest.mark.docker
def test_cli_sandbox_example_runs_code_in_the_sandbox(checkout: Path) -> None:
    line = next(ln for ln in _cli_examples() if "--sandbox" in ln)
    proc = _cli(line, checkout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "call run_code" in proc.stdout and "print(17 * 23)" in proc.stdout
    assert re.search(r"stdout:[\s│]*391", proc.stdout), proc.stdout  # computed in the sandbox, not scripted


@pytest.mark.slow
def test_cli_tools_and_tau_examples_show_what_the_readme_says(checkout: Path) -> None:
    lines = [ln for ln in _cli_examples() if "--sandbox" not in ln]
    procs = [_cli(line, checkout) for line in lines]
    for line, proc in zip(lines, procs, strict=True):
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"
    tools, oracle, demo, view = procs
    for name in ("get_order", "cancel_order", "web_search", "fetch_url"):
        assert name in tools.stdout
    assert "user_stop 3" in oracle.stdout and "1.000" in oracle.stdout
    results = json.loads((checkout / "results.json").read_text())
    [sim] = results["simulations"]
    assert sim["info"]["agent_model"] == "demo:SmolLM2-135M-Instruct"
    assert sim["termination_reason"] in view.stdout
    if sim["termination_reason"] not in ("user_stop", "agent_stop"):
        assert sim["info"]["notes"], "a simulation that ends in error says why"
        assert sim["info"]["notes"][0][:60] in view.stdout.replace("\n", " ")


@pytest.mark.docker
def test_sandbox_example_runs_as_written(tmp_path):
    proc = _run(_block("DockerSandbox"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "10"


def test_the_demo_cache_size_is_what_the_readme_says() -> None:
    """The demo model's cache as the set-up leaves it (fetched if missing, as `make demo` does): the GGUF file and
    the float32 checkpoint, against the README's "NNN MB in all" (decimal megabytes, within 1%)."""
    from keye_agent.backends.demo_model import GGUF_NAME, cache_dir, ensure_demo_model

    ckpt = ensure_demo_model(quiet=True)
    files = [cache_dir() / GGUF_NAME, *(p for p in ckpt.rglob("*") if p.is_file())]
    total_mb = sum(p.stat().st_size for p in files) / 1e6
    [claimed] = re.findall(r"float32 checkpoint: (\d+) MB in all", README)
    assert abs(total_mb - int(claimed)) <= 0.01 * int(claimed), f"{total_mb:.0f} MB on disk"
