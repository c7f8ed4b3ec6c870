"""A TAU simulation that ends in error says why, in its results file and in `tau view`, through the real command.
The agent's and user's turns are scripted (replayed from JSONL, not a model); the store domain, the orchestrator,
the agent loop and the results file are real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("keye-agent"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250"}
    return subprocess.run([EXE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _script(path: Path, turns: list[str]) -> str:
    path.write_text("".join(json.dumps(t) + "\n" for t in turns), encoding="utf-8")
    return f"scripted:{path}"


def test_an_agent_that_fails_says_why_and_its_tokens_count(tmp_path: Path) -> None:
    agent = _script(tmp_path / "agent.jsonl", ["<tool_call>\nthis is no JSON\n</tool_call>"] * 8)
    user = _script(tmp_path / "user.jsonl", ["Hello, I need help with an order."] * 4)
    out = tmp_path / "r.json"
    proc = _cli("tau", "run", "--domain", "store", "--agent-model", agent, "--user-model", user, "--num-tasks", "1",
                "--save-to", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [sim] = json.loads(out.read_text())["simulations"]
    assert sim["termination_reason"] == "too_many_errors"
    [note] = [n for n in sim["info"]["notes"] if n.startswith("agent: ")]
    assert note.startswith("agent: ") and "consecutive failed steps" in note and "the last fault:" in note
    assert "could not be parsed" in note  # what the model was told, not only that something failed
    assert sim["info"]["usage"]["agent"]["completion_tokens"] > 0  # rejected steps' tokens are counted
    view = _cli("tau", "view", str(out), cwd=tmp_path)
    assert view.returncode == 0
    assert f"trial 0: too_many_errors: {note[:80]}" in view.stdout
    one = _cli("tau", "view", str(out), "--task-id", sim["task_id"], cwd=tmp_path)
    assert f"why: {note[:80]}" in one.stdout and "tokens: agent 0+0" not in one.stdout


def test_too_many_failed_tool_calls_name_the_last_failure(tmp_path: Path) -> None:
    calls = [f'<tool_call>\n{{"name": "get_order", "arguments": {{"order_id": "NOPE-{i}"}}}}\n</tool_call>'
             for i in range(12)]
    agent = _script(tmp_path / "agent.jsonl", calls)
    user = _script(tmp_path / "user.jsonl", ["Where is my order?"] * 4)
    out = tmp_path / "r.json"
    proc = _cli("tau", "run", "--domain", "store", "--agent-model", agent, "--user-model", user, "--num-tasks", "1",
                "--max-errors", "2", "--save-to", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [sim] = json.loads(out.read_text())["simulations"]
    assert sim["termination_reason"] == "too_many_errors"
    failed = [m for m in sim["messages"] if m["role"] == "tool" and m.get("error")]
    assert any(n.startswith("2 failed tool calls (limit 2); the last: ") and failed[-1]["content"][:40] in n
               for n in sim["info"]["notes"]), sim["info"]["notes"]


def test_a_simulation_past_its_timeout_says_so_and_the_command_exits_cleanly(tmp_path: Path) -> None:
    """The demo model as agent and user, with a timeout that cuts a model call short: the simulation ends
    `timeout`, says so, and the command exits 0 (a generation left running used to abort the process at exit)."""
    out = tmp_path / "r.json"
    proc = _cli("tau", "run", "--domain", "store", "--agent-model", "demo", "--user-model", "demo", "--num-tasks",
                "1", "--max-tokens", "96", "--timeout", "2", "--save-to", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "terminate called" not in proc.stderr
    [sim] = json.loads(out.read_text())["simulations"]
    assert sim["termination_reason"] == "timeout"
    assert "the simulation ran past its 2 s timeout" in sim["info"]["notes"]
