"""Runs are private to themselves: many concurrent runs of one Agent, per-run limits, handles that cancel one run.

Only the model is scripted (ScriptedBackend, answering from the conversation it is given); tools are real.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from keye_agent.agent import Agent, RunFinished, StepFinished
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.errors import KeyeAgentError
from keye_agent.tools import Tool
from keye_agent.types import AssistantTurn, Message, ToolCall

HANG = "hang"


async def _square(n: int) -> str:
    if n < 0:
        await asyncio.sleep(30)  # the run that gets cancelled
        return "never"
    await asyncio.sleep(0.001 * (n % 5))  # runs interleave: their steps finish out of order
    return str(n * n)


SQUARE = Tool(name="square", description="Square a number.", fn=_square, timeout_s=None, retries=0,
              parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})


def _answer(messages, tools) -> AssistantTurn:
    """A model that reads its own run's conversation: square the task's number, then answer with the result."""
    n = int(messages[0].text.split()[-1])
    results = [m.text for m in messages if m.role == "tool"]
    if not results:
        return AssistantTurn(tool_calls=[ToolCall(id=f"sq{n}", name="square", arguments={"n": n})])
    return AssistantTurn(text=f"{n} squared is {results[-1]}")


def test_twenty_concurrent_runs_of_one_agent_each_keep_their_own_trajectory():
    agent = Agent(ScriptedBackend([_answer] * 40), [SQUARE])

    async def main():
        return await asyncio.gather(*(agent.arun(f"square {n}") for n in range(20)))

    results = asyncio.run(main())
    for n, r in enumerate(results):
        assert r.status == "completed" and r.final_answer == f"{n} squared is {n * n}" and r.steps == 2
        assert r.trajectory.task == f"square {n}"
        assert [m.role for m in r.trajectory.messages] == ["user", "assistant", "tool", "assistant"]
        assert r.trajectory.steps[0].tool_results[0].call_id == f"sq{n}"
        assert r.usage.total_tokens == sum(s.usage.total_tokens for s in r.trajectory.steps)


def test_cancelling_one_handle_leaves_the_other_runs_going():
    agent = Agent(ScriptedBackend([_answer] * 40), [SQUARE])

    async def main():
        handles = [agent.start(f"square {n}") for n in range(-1, 19)]  # the first one hangs in its tool
        await asyncio.sleep(0.05)
        handles[0].cancel()
        return [await h for h in handles]

    results = asyncio.run(main())
    assert results[0].status == "cancelled" and "cancelled" in results[0].error
    assert results[0].trajectory.steps[-1].errors[-1].kind == "cancelled"
    for n, r in enumerate(results[1:]):
        assert r.status == "completed" and r.final_answer == f"{n} squared is {n * n}"


def test_agent_cancel_stops_every_run_in_flight_and_only_those():
    agent = Agent(ScriptedBackend([_answer] * 10), [SQUARE])

    async def main():
        running = [agent.start("square -1"), agent.start("square -1")]
        await asyncio.sleep(0.05)
        agent.cancel()
        first = [await h for h in running]
        later = await agent.arun("square 3")  # a run started after the cancel is not affected
        return first, later

    first, later = asyncio.run(main())
    assert [r.status for r in first] == ["cancelled", "cancelled"]
    assert later.status == "completed" and later.final_answer == "3 squared is 9"


def test_handle_events_stream_and_the_result_outside_an_event_loop():
    agent = Agent(ScriptedBackend([_answer] * 4), [SQUARE])

    async def main():
        h = agent.start("square 4")
        events = [ev async for ev in h.events()]
        return events, await h

    events, result = asyncio.run(main())
    assert isinstance(events[-1], RunFinished) and events[-1].result is result
    assert [e.record.index for e in events if isinstance(e, StepFinished)] == [1, 2]
    h = agent.start("square 5")  # no loop here: the run goes on its own thread
    sync_events = list(h)
    assert h.result(timeout=10).final_answer == "5 squared is 25" and isinstance(sync_events[-1], RunFinished)
    with pytest.raises(KeyeAgentError, match="outside an event loop"):
        h.__await__()


def test_a_handle_cancelled_from_another_thread_outside_an_event_loop():
    agent = Agent(ScriptedBackend([_answer]), [SQUARE])
    h = agent.start("square -1")
    threading.Timer(0.1, h.cancel).start()
    assert h.result(timeout=10).status == "cancelled"


def test_limits_are_per_run_and_never_change_the_agent():
    script = [AssistantTurn(tool_calls=[ToolCall(id=f"c{i}", name="square", arguments={"n": i})]) for i in range(9)]
    agent = Agent(ScriptedBackend(script), [SQUARE], max_steps=20)
    r = agent.run("square forever", max_steps=2)
    assert r.status == "max_steps" and r.steps == 2 and "within 2 steps" in r.error
    assert agent.max_steps == 20
    r = agent.run("again", max_steps=3, max_consecutive_errors=1)
    assert r.status == "max_steps" and r.steps == 3
    with pytest.raises(KeyeAgentError, match="unknown run limit 'max_step'"):
        agent.run("?", max_step=3)
    with pytest.raises(KeyeAgentError, match="max_steps must be an integer of at least 1"):
        agent.run("?", max_steps=0)


def test_a_run_is_driven_once():
    agent = Agent(ScriptedBackend(["a", "b"]), [])
    run = agent.new_run("?")

    async def main():
        events = [ev async for ev in run.events()]
        with pytest.raises(KeyeAgentError, match="driven once"):
            async for _ in run.events():
                pass
        return events

    assert asyncio.run(main())[-1].result.final_answer == "a"


def test_history_of_one_run_does_not_leak_into_the_next():
    be = ScriptedBackend(["first", "second"])
    agent = Agent(be, [])
    agent.run("one", history=[Message.user("hi"), Message.assistant("hello")])
    r = agent.run("two")
    assert [m.text for m in r.trajectory.messages] == ["two", "second"]


def test_the_readme_example_of_run_handles_runs_as_written(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "agent.start(" in b)
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["completed The square is 9.", "completed The square is 16.", "cancelled None"]


def test_parallel_sync_calls_of_one_turn_run_at_once_also_after_a_sync_tool_ran():
    """Three read-only sync calls of one turn meet at a barrier that opens only when all three run together."""
    from keye_agent.tools import tool

    barrier = threading.Barrier(3, timeout=5)

    @tool
    def warm(x: int) -> str:
        """Warm up a worker.

        Args:
            x: anything
        """
        return "warm"

    @tool
    def meet(i: int) -> str:
        """Wait for the other calls of the turn.

        Args:
            i: the call's number
        """
        barrier.wait()
        return f"met {i}"

    burst = AssistantTurn(tool_calls=[ToolCall(id=f"m{i}", name="meet", arguments={"i": i}) for i in range(3)])
    script = [AssistantTurn(tool_calls=[ToolCall(id="w", name="warm", arguments={"x": 1})]), burst, "done"]
    r = Agent(ScriptedBackend(script), [warm, meet]).run("?")
    assert r.status == "completed"
    assert [res.content for res in r.trajectory.steps[1].tool_results] == ["met 0", "met 1", "met 2"]
