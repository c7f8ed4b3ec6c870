"""Step faults are typed: each kind the loop produces, its event, the words the model sees (taken from the backend's
call format), and the JSONL round trip, old text errors included.

Only the model is scripted (ScriptedBackend); tools, the registry and trajectory files are real.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from keye_agent.agent import Agent, ContextPolicy, ErrorEvent
from keye_agent.backends.openai import OpenAIBackend
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.errors import ModelError, ToolTimeoutError
from keye_agent.formats.hermes import HERMES
from keye_agent.tools import Tool, tool
from keye_agent.types import (
    AssistantTurn,
    BudgetSpent,
    CallFormat,
    FaultKind,
    MalformedOutput,
    RepeatedCall,
    ToolCall,
    ToolErrorKind,
    ToolFault,
    Trajectory,
)

BAD_CALL = '<tool_call>\n{"name": "lookup", "arguments": {"code": OSL}}\n</tool_call>'


@tool
def lookup(code: str) -> str:
    """Look up an airport by IATA code.

    Args:
        code: three-letter IATA code
    """
    if code != "OSL":
        raise KeyError(f"no airport with code {code!r}")
    return "Oslo Gardermoen"


def tc(name, cid="c1", **args):
    return AssistantTurn(tool_calls=[ToolCall(id=cid, name=name, arguments=args)])


@dataclass(frozen=True)
class Tags:
    name: str = "tags"

    def how_to_call(self) -> str:
        return "Write each call as <call>{json}</call>, or say so."


def test_every_fault_kind_is_typed_in_the_record_and_its_event():
    @tool(mutates_state=True)
    def delete(code: str) -> str:
        """Delete an airport.

        Args:
            code: the code
        """
        return "deleted"

    script = [
        BAD_CALL,
        AssistantTurn(text=""),
        AssistantTurn(text="Oslo Garder", finish_reason="length"),
        AssistantTurn(tool_calls=[ToolCall(id="a", name="nope", arguments={}),
                                  ToolCall(id="b", name="lookup", arguments={"code": 7}),
                                  ToolCall(id="c", name="lookup", arguments={"code": "XXX"}),
                                  ToolCall(id="d", name="delete", arguments={"code": "OSL"})]),
        tc("lookup", "e", code="XXX"),
        "Oslo.",
    ]
    agent = Agent(ScriptedBackend(script), [lookup, delete], max_consecutive_errors=9, approve=lambda t, c: False,
                  final_check=lambda answer, traj: "name the airport")
    events = list(agent.stream("OSL?", max_steps=6))
    result = events[-1].result
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.kind for e in errors] == [
        FaultKind.MALFORMED, FaultKind.EMPTY, FaultKind.TRUNCATED, FaultKind.TOOL, FaultKind.TOOL, FaultKind.TOOL,
        FaultKind.TOOL, FaultKind.REPEATED, FaultKind.FINAL_REJECTED, FaultKind.BUDGET]
    recorded = [f for s in result.trajectory.steps for f in s.errors]
    assert [e.fault for e in errors] == recorded and all(e.message == e.fault.message for e in errors)
    tool_faults = [f for f in recorded if isinstance(f, ToolFault)]
    assert [f.error_kind for f in tool_faults] == [ToolErrorKind.NOT_FOUND, ToolErrorKind.INVALID_ARGUMENTS,
                                                   ToolErrorKind.FAILED, ToolErrorKind.DENIED]
    assert [f.call_id for f in tool_faults] == ["a", "b", "c", "d"] and tool_faults[2].error_type == "KeyError"
    repeated = next(f for f in recorded if isinstance(f, RepeatedCall))
    assert repeated.first_step == 4 and repeated.call_id == "e"
    assert isinstance(recorded[-1], BudgetSpent) and recorded[-1].status == "max_steps"
    assert result.status == "max_steps"


def test_model_failure_and_cancellation_are_faults_too():
    def fail(messages, tools):
        raise ModelError("the server said no")

    r = Agent(ScriptedBackend([fail]), []).run("?")
    assert r.status == "model_error" and r.trajectory.steps[-1].errors[-1].kind == FaultKind.MODEL

    async def hang(q: str) -> str:
        await asyncio.sleep(30)
        return "never"

    t = Tool(name="hang", description="Hangs.", fn=hang, timeout_s=None, retries=0,
             parameters={"type": "object", "properties": {"q": {"type": "string"}}})

    async def main():
        h = Agent(ScriptedBackend([tc("hang", q="x")]), [t]).start("?")
        await asyncio.sleep(0.05)
        h.cancel()
        return await h

    r = asyncio.run(main())
    assert r.status == "cancelled" and r.trajectory.steps[-1].errors[-1].kind == FaultKind.CANCELLED


def test_hints_follow_the_error_class_not_its_name():
    class SlowBackendTimeout(ToolTimeoutError):
        pass

    async def slow(q: str) -> str:
        raise SlowBackendTimeout("the upstream search did not answer in 5 s", tool="slow", timeout_s=5)

    t = Tool(name="slow", description="Slow.", fn=slow, retries=0,
             parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    r = Agent(ScriptedBackend([tc("slow", q="a"), "gave up"]), [t]).run("?")
    msg = [m.text for m in r.trajectory.messages if m.role == "tool"][0]
    assert msg.startswith("Error (SlowBackendTimeout)") and "took too long" in msg
    assert r.trajectory.steps[0].errors[0].error_kind == ToolErrorKind.TIMEOUT


def test_format_fault_wording_comes_from_the_backends_call_format():
    r = Agent(ScriptedBackend([BAD_CALL, "ok"], call_format=Tags()), [lookup]).run("?")
    said = r.trajectory.messages[2].text
    assert said.startswith("Your last reply contained a tool call that could not be parsed:\n- ")
    assert said.endswith("\nWrite each call as <call>{json}</call>, or say so.")  # the format's words, as they are
    r = Agent(ScriptedBackend([BAD_CALL, "ok"]), [lookup]).run("?")  # the scripted backend's text is Hermes
    assert r.trajectory.messages[2].text.endswith(HERMES.how_to_call())
    r = Agent(ScriptedBackend([BAD_CALL, "ok"], call_format=None), [lookup]).run("?")  # none: a neutral wording
    fault = r.trajectory.steps[0].errors[0]
    assert isinstance(fault, MalformedOutput) and "tool-calling format you were given" in fault.message
    how = fault.message.split("\n")[-1]
    assert "<" not in how and "tool_call" not in how
    fmt = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1").call_format
    assert isinstance(fmt, CallFormat) and fmt.name == "openai"
    assert "function calling" in fmt.how_to_call() and "<" not in fmt.how_to_call()


def test_corrections_never_point_to_a_tool_the_run_did_not_offer():
    empty = AssistantTurn(text="")
    r = Agent(ScriptedBackend([empty, "done"]), [lookup], final_answer_tool=False).run("?")
    said = r.trajectory.steps[0].errors[0].message
    assert "final_answer" not in said and "call a tool" in said
    r = Agent(ScriptedBackend([empty, "done"]), [lookup]).run("?")
    assert "final_answer tool" in r.trajectory.steps[0].errors[0].message
    r = Agent(ScriptedBackend([empty, AssistantTurn(text="cut", finish_reason="length"), "done"]), [],
              final_answer_tool=False).run("?")
    assert all("tool" not in f.message for s in r.trajectory.steps for f in s.errors)


def test_faults_survive_the_jsonl_round_trip(tmp_path):
    script = [BAD_CALL, tc("lookup", code="XXX"), tc("lookup", "c2", code="XXX"), "Oslo."]
    r = Agent(ScriptedBackend(script), [lookup], max_consecutive_errors=9).run("?")
    path = r.trajectory.save(tmp_path / "t.jsonl", r)
    back = Trajectory.load(path)
    assert [s.errors for s in back.steps] == [s.errors for s in r.trajectory.steps]
    assert [type(f).__name__ for s in back.steps for f in s.errors] == ["MalformedOutput", "ToolFault", "RepeatedCall"]


def test_an_old_trajectory_with_text_errors_still_loads_typed(tmp_path):
    parse_msg = ("Your last reply contained a tool call that could not be parsed:\n- block 1: invalid JSON\n"
                 "Write each call as <tool_call>...</tool_call>, or answer in plain text.")
    failed = {"call_id": "c1", "name": "lookup", "ok": False, "error": "KeyError: 'no airport'",
              "error_type": "KeyError"}
    repeated = {"call_id": "c2", "name": "lookup", "ok": False, "error_type": "RepeatedCallError",
                "error": "this exact call (lookup with the same arguments) already failed at step 2 with: x."}
    timed_out = {"call_id": "c3", "name": "slow", "ok": False, "error": "tool 'slow' did not finish within 1 s",
                 "error_type": "ToolTimeoutError"}
    lines = [
        {"type": "header", "version": 1, "task": "?", "model": "old"},
        {"type": "step", "index": 1, "errors": [parse_msg]},
        {"type": "step", "index": 2, "tool_results": [failed], "errors": ["lookup: KeyError: 'no airport'"]},
        {"type": "step", "index": 3, "tool_results": [repeated, timed_out],
         "errors": [f"lookup: {repeated['error']}", f"slow: {timed_out['error']}"]},
        {"type": "step", "index": 4, "errors": ["Your final answer was not accepted: name it",
                                                "3 consecutive failed steps (limit 3)"]},
        {"type": "end", "messages": []},
    ]
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    steps = Trajectory.load(path).steps
    kinds = [[f.kind.value for f in s.errors] for s in steps]
    assert kinds == [["malformed"], ["tool"], ["repeated", "tool"], ["final_rejected", "budget"]]
    assert steps[0].errors[0].problems == ["block 1: invalid JSON"]
    assert steps[2].errors[0].first_step == 2 and steps[2].errors[1].error_kind == ToolErrorKind.TIMEOUT
    assert steps[3].errors[0].objection == "name it" and steps[3].errors[1].status == "max_errors"


def test_plan_compaction_and_final_check_are_records_of_their_own():
    @tool
    def page(n: int) -> str:
        """A long page.

        Args:
            n: page number
        """
        return " ".join(f"w{n}_{i}" for i in range(400))

    script = ["plan one", tc("page", n=1), tc("page", "c2", n=2), "plan two", "Done."]
    agent = Agent(ScriptedBackend(script, context_window=1000), [page], plan_every=2,
                  context=ContextPolicy(reserve_tokens=100, keep_recent_steps=1), final_check=lambda answer, traj: None)
    r = agent.run("read two pages")
    kinds = [(s.index, s.kind) for s in r.trajectory.steps]
    assert kinds == [(1, "plan"), (1, "model"), (2, "model"), (3, "plan"), (3, "compaction"), (3, "model"),
                     (3, "final_check")]
    assert r.status == "completed" and r.steps == 3 and "elided the output of tool 'page'" in r.trajectory.steps[4].notes[0]
    assert r.trajectory.model_turns()[0].text == "plan one"  # a replay sees the plan calls too
