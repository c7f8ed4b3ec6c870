"""Core types: messages with parts, trajectories saved as JSONL, loaded back and replayed."""

from __future__ import annotations

import json

import pytest

from keye_agent.agent import Agent
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.errors import TrajectoryError
from keye_agent.tools import tool
from keye_agent.types import AssistantTurn, ImagePart, Message, MessageList, TextPart, ToolCall, Trajectory, Usage


@tool
def square(x: int) -> int:
    """Square a number.

    Args:
        x: the number
    """
    return x * x


def test_message_with_parts_round_trips():
    m = Message.user([TextPart(text="what is in "), ImagePart(url="file:///tmp/cat.png"), TextPart(text="?")])
    again = Message.model_validate_json(m.model_dump_json())
    assert again == m and again.text == "what is in ?"
    assert isinstance(again.content[1], ImagePart)


def test_usage_adds():
    assert (Usage(prompt_tokens=1, completion_tokens=2) + Usage(prompt_tokens=3)).total_tokens == 6


def test_trajectory_saves_loads_and_replays_identically(tmp_path):
    script = [AssistantTurn(tool_calls=[ToolCall(id="a", name="square", arguments={"x": 7})]),
              AssistantTurn(tool_calls=[ToolCall(id="b", name="square", arguments={"x": "oops"})]),
              "49, and the second call failed."]
    first = Agent(ScriptedBackend(script), [square], instructions="Use tools.").run("Square 7.")
    path = first.trajectory.save(tmp_path / "run.jsonl", result=first)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header" and json.loads(lines[-1])["type"] == "end"
    assert json.loads(lines[-1])["result"]["status"] == "completed"

    loaded = Trajectory.load(path)
    assert loaded.task == "Square 7." and len(loaded.steps) == 3
    assert loaded.steps[1].tool_results[0].error_type == "ToolValidationError"
    assert loaded.messages == first.trajectory.messages

    replay = Agent(ScriptedBackend.from_trajectory(loaded), [square], instructions="Use tools.").run("Square 7.")
    assert replay.final_answer == first.final_answer
    assert [s.tool_results for s in replay.trajectory.steps] == [
        [r.model_copy(update={"duration_s": r2.duration_s}) for r, r2 in zip(s.tool_results, s2.tool_results, strict=True)]
        for s, s2 in zip(first.trajectory.steps, replay.trajectory.steps, strict=True)]


def test_loading_a_bad_trajectory_names_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"type": "header", "task": "x"}\n{"type": "step", "index": "not a number"}\n')
    with pytest.raises(TrajectoryError, match=r"bad.jsonl:2: not a trajectory record"):
        Trajectory.load(p)
    p.write_text('{"type": "step", "index": 1}\n')
    with pytest.raises(TrajectoryError, match="no header line"):
        Trajectory.load(p)
    with pytest.raises(TrajectoryError, match="cannot read"):
        Trajectory.load(tmp_path / "missing.jsonl")


def test_message_list_counts_changes_other_than_appends():
    ml = MessageList()
    ml.append(Message.user("a"))
    ml.append(Message.user("b"))
    assert ml.revision == 0
    ml[0] = Message.user("c")
    del ml[1]
    ml.insert(0, Message.user("d"))
    assert ml.revision == 3


def test_scripted_backend_counts_incrementally_and_exactly():
    be = ScriptedBackend([])
    ml = MessageList([Message.user("one two three")])
    n1 = be.count_tokens(ml)
    ml.append(Message.assistant("four five"))
    n2 = be.count_tokens(ml)
    ml[0] = Message.user("one")
    n3 = be.count_tokens(ml)
    assert (n1, n2, n3) == (7, 13, 11)
    assert n3 == be.count_tokens(list(ml))
