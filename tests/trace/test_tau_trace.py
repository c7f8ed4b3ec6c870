"""`keye-agent tau run --trace console`: a span per simulation, and the agent's runs (one per reply) inside it.
The agent's and user's turns are scripted (replayed from JSONL, not a model); the store domain, orchestrator,
agent loop, OpenTelemetry SDK and console exporter are real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

ROOT = Path(__file__).resolve().parents[2]


def _script(path: Path, turns: list[str]) -> str:
    path.write_text("".join(json.dumps(t) + "\n" for t in turns), encoding="utf-8")
    return f"scripted:{path}"


def _console_spans(text: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporter wrote, one per span, among whatever else is on stderr."""
    dec, spans, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) >= 0:
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if isinstance(obj, dict) and "context" in obj and "name" in obj:
            spans.append(obj)
        i = end
    return spans


def test_tau_run_traces_each_simulation_with_its_agent_runs(tmp_path: Path) -> None:
    calls = [f'<tool_call>\n{{"name": "get_order", "arguments": {{"order_id": "NOPE-{i}"}}}}\n</tool_call>'
             for i in range(12)]
    agent = _script(tmp_path / "agent.jsonl", calls)
    user = _script(tmp_path / "user.jsonl", ["Where is my order?"] * 4)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "keye_agent.cli.main", "tau", "run", "--domain", "store",
                           "--agent-model", agent, "--user-model", user, "--num-tasks", "1", "--max-errors", "2",
                           "--save-to", str(tmp_path / "r.json"), "--trace", "console", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    spans = _console_spans(proc.stderr)
    [sim] = [s for s in spans if s["name"] == "invoke_workflow tau"]
    assert sim["parent_id"] is None
    assert sim["attributes"]["keye.tau.domain"] == "store" and sim["attributes"]["keye.tau.trial"] == 0
    assert sim["attributes"]["keye.tau.termination_reason"] == "too_many_errors"
    assert sim["attributes"]["keye.tau.reward"] == 0.0
    runs = [s for s in spans if s["name"] == "invoke_agent keye-agent"]
    assert runs and all(r["parent_id"] == sim["context"]["span_id"] for r in runs)
    tools = [s for s in spans if s["name"] == "execute_tool get_order"]
    assert len(tools) >= 2 and all(t["status"]["status_code"] == "ERROR" for t in tools)
    assert {t["context"]["trace_id"] for t in spans} == {sim["context"]["trace_id"]}
