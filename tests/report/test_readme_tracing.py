"""The README's "Tracing and reports" examples run as written: the Python block in a fresh interpreter (its output
is the comment under it), and each command line through the real `keye-agent` command, exporting to the OTLP
receiver of tests/trace/otlp_receiver.py; the pages the report lines write are opened in headless Chromium. The model
turns are scripted (examples/scripted/, a replay, not a model) or the TAU oracle (gold actions)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from keye_agent.types import Trajectory  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SECTION = (ROOT / "README.md").read_text().split("## Tracing and reports\n", 1)[1].split("\n## ", 1)[0]


def _lines(lang: str) -> list[str]:
    blocks = re.findall(rf"```{lang}\n(.*?)```", SECTION, re.S)
    return blocks


def test_python_example_prints_the_span_tree_it_shows(tmp_path: Path) -> None:
    [code] = _lines("python")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    shown = [ln.removeprefix("# ") for ln in code.split("show()\n", 1)[1].splitlines() if ln.startswith("# ")]
    assert proc.stdout.splitlines() == shown


def _cli_lines() -> list[str]:
    return [ln for b in _lines("bash") for ln in b.replace("\\\n", " ").splitlines() if ln.strip()]


def _cli(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(line)
    assert argv[0] == "keye-agent"
    exe = str(Path(sys.executable).with_name("keye-agent"))
    return subprocess.run([exe, *argv[1:]], cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(1500)  # chromium may still be installing (tests/report/conftest.py waits for it)
def test_command_line_examples_do_what_the_readme_says(tmp_path: Path, otlp_receiver: ThreadingHTTPServer,
                                                       browse) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_receiver.server_address[1]}"}
    lines = _cli_lines()
    assert [ln.split()[1] for ln in lines] == ["run", "report", "tau", "report"]
    for line in lines:
        proc = _cli(line, tmp_path, env)
        assert proc.returncode == 0, (line, proc.stderr[-2000:])
    spans = otlp_receiver.spans  # type: ignore[attr-defined]
    steps = {s["span_id"]: s["name"] for s in spans if s["name"].startswith("step ")}
    tools = [s for s in spans if s["name"] == "execute_tool get_weather"]
    failed = [t for t in tools if t["attributes"].get("error.type")]
    assert len(tools) == 3 and len(failed) == 1
    assert failed[0]["attributes"]["error.type"] == "ValueError" and steps[failed[0]["parent"]] == "step 1"
    assert sorted(steps[t["parent"]] for t in tools if t not in failed) == ["step 2", "step 2"]
    assert Trajectory.load(tmp_path / "weather.jsonl").steps[2].turn.text.startswith("Rome is warmer")

    def dom(page: str) -> str:
        proc = browse(tmp_path / page, "--dump-dom")
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    weather = dom("weather.html")
    assert 'data-ready="1"' in weather and "corrects step 1" in weather and "unknown city 'Osloo'" in weather
    oracle = dom("oracle.html")
    assert "pass^1</b> 1.000" in oracle and "pass^2</b> 1.000" in oracle and oracle.count('class="card item ') == 4
