"""The planner loop on scripted trajectories: every self-correction path, every budget, events and results.

Only the model is scripted (ScriptedBackend); tools and the registry are real.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from keye_agent.agent import (
    Agent,
    ErrorEvent,
    FinalAnswer,
    RunFinished,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.errors import BackendConnectionError
from keye_agent.tools import Tool, tool
from keye_agent.types import AssistantTurn, Message, ToolCall

CALLS: list[tuple[str, int]] = []


@tool
def lookup(code: str) -> str:
    """Look up an airport by IATA code.

    Args:
        code: three-letter IATA code, e.g. "OSL"
    """
    table = {"OSL": "Oslo Gardermoen", "CDG": "Paris Charles de Gaulle"}
    if code not in table:
        raise KeyError(f"no airport with code {code!r}")
    return table[code]


def tc(name, cid="c1", **args):
    return AssistantTurn(tool_calls=[ToolCall(id=cid, name=name, arguments=args)])


def last_tool_message(result) -> str:
    return [m for m in result.trajectory.messages if m.role == "tool"][-1].text


def test_plain_answer_completes_in_one_step():
    r = Agent(ScriptedBackend(["Oslo is the capital of Norway."]), [lookup]).run("Capital of Norway?")
    assert r.status == "completed" and r.final_answer == "Oslo is the capital of Norway." and r.steps == 1
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_tool_then_answer_and_final_answer_tool():
    be = ScriptedBackend([tc("lookup", code="OSL"), tc("final_answer", "c2", answer="Oslo Gardermoen")])
    r = Agent(be, [lookup]).run("Which airport is OSL?")
    assert r.status == "completed" and r.final_answer == "Oslo Gardermoen" and r.steps == 2
    roles = [m.role for m in r.trajectory.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "tool"]
    assert r.trajectory.steps[0].tool_results[0].content == "Oslo Gardermoen"


def test_malformed_output_gets_a_parse_correction_then_recovers():
    be = ScriptedBackend([
        '<tool_call>\n{"name": "lookup", "arguments": {"code": OSL}}\n</tool_call>',
        '<tool_call>\n{"name": "lookup", "arguments": {"code": "OSL"}}\n</tool_call>',
        "It is Oslo Gardermoen.",
    ])
    r = Agent(be, [lookup]).run("OSL?")
    assert r.status == "completed" and r.steps == 3
    first = r.trajectory.steps[0]
    assert first.errors and first.errors[0].kind == "malformed" and "could not be parsed" in first.errors[0].message
    correction = r.trajectory.messages[2]
    assert correction.role == "user" and "could not be parsed" in correction.text
    assert 'Write each call as <tool_call>\n{"name": "TOOL_NAME"' in correction.text  # the Hermes format's words


def test_unknown_tool_invalid_arguments_and_raising_tool_each_get_their_own_correction():
    be = ScriptedBackend([
        tc("lookup_airport", code="OSL"),
        tc("lookup", "c2", code=7),
        tc("lookup", "c3", code="XXX"),
        tc("lookup", "c4", code="CDG"),
        "Paris Charles de Gaulle.",
    ])
    r = Agent(be, [lookup], max_consecutive_errors=5).run("?")
    assert r.status == "completed"
    tools_msgs = [m.text for m in r.trajectory.messages if m.role == "tool"]
    assert tools_msgs[0].startswith("Error (ToolNotFoundError): unknown tool 'lookup_airport'. Did you mean 'lookup'?")
    assert "Call one of the available tools" in tools_msgs[0]
    assert "arguments.code: 7 is not of type 'string'" in tools_msgs[1] and "Fix the arguments" in tools_msgs[1]
    assert tools_msgs[2].startswith("Error (KeyError): \"no airport with code 'XXX'\"")  # the class named once
    assert tools_msgs[3] == "Paris Charles de Gaulle"


def test_timeout_gets_its_own_correction():
    async def slow(q: str) -> str:
        await asyncio.sleep(10)
        return "late"

    t = Tool(name="slow", description="Slow search.", fn=slow, timeout_s=0.05, retries=0,
             parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]})
    r = Agent(ScriptedBackend([tc("slow", q="a"), "gave up"]), [t]).run("?")
    msg = [m.text for m in r.trajectory.messages if m.role == "tool"][0]
    assert msg.startswith("Error (ToolTimeoutError)") and "took too long" in msg


def test_the_same_failing_call_repeated_is_not_run_again():
    n = {"calls": 0}

    @tool
    def fragile(q: str) -> str:
        """Fails on 'bad'.

        Args:
            q: query
        """
        n["calls"] += 1
        raise ValueError("bad query")

    be = ScriptedBackend([tc("fragile", q="bad"), tc("fragile", "c2", q="bad"), "ok, giving up"])
    r = Agent(be, [fragile]).run("?")
    assert n["calls"] == 1
    msg = last_tool_message(r)
    assert msg.startswith("Error (RepeatedCallError)") and "already failed at step 1" in msg
    assert "ValueError: bad query" in msg


def test_empty_answer_is_corrected():
    r = Agent(ScriptedBackend([AssistantTurn(text=""), "done"]), []).run("?")
    assert r.status == "completed" and "empty" in r.trajectory.steps[0].errors[0].message


def test_budget_max_steps():
    r = Agent(ScriptedBackend([tc("lookup", f"c{i}", code="OSL") for i in range(5)]), [lookup], max_steps=3).run("?")
    assert r.status == "max_steps" and r.steps == 3 and r.final_answer is None and "3 steps" in r.error


def test_budget_consecutive_errors():
    be = ScriptedBackend([tc("nope", f"c{i}", x=i) for i in range(10)])
    r = Agent(be, [lookup], max_consecutive_errors=3).run("?")
    assert r.status == "max_errors" and r.steps == 3 and "3 consecutive failed steps" in r.error


def test_budget_tokens():
    be = ScriptedBackend([tc("lookup", f"c{i}", code="OSL") for i in range(10)])
    r = Agent(be, [lookup], max_total_tokens=200).run("?")
    assert r.status == "max_tokens" and 1 <= r.steps < 10 and "token budget" in r.error


def test_budget_wall_clock_interrupts_a_hanging_tool():
    async def hang(q: str) -> str:
        await asyncio.sleep(30)
        return "never"

    t = Tool(name="hang", description="Hangs.", fn=hang, timeout_s=None, retries=0,
             parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    t0 = time.perf_counter()
    r = Agent(ScriptedBackend([tc("hang", q="a")]), [t], max_wall_s=0.3).run("?")
    assert r.status == "timeout" and "wall-clock" in r.error
    assert time.perf_counter() - t0 < 10  # ended by the budget, not by the 30 s sleep
    assert r.trajectory.steps and r.trajectory.steps[-1].errors


def test_model_error_ends_the_run_with_a_status():
    def fail(messages, tools):
        raise BackendConnectionError("server at http://127.0.0.1:9 refused the connection")

    r = Agent(ScriptedBackend([fail]), []).run("?")
    assert r.status == "model_error" and "refused" in r.error


def test_cancel_from_another_thread_stops_a_running_tool():
    async def hang(q: str) -> str:
        await asyncio.sleep(30)
        return "never"

    t = Tool(name="hang", description="Hangs.", fn=hang, timeout_s=None, retries=0,
             parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    agent = Agent(ScriptedBackend([tc("hang", q="a")]), [t])
    threading.Timer(0.2, agent.cancel).start()
    r = agent.run("?")
    assert r.status == "cancelled"


def test_approval_denied_goes_back_to_the_model():
    @tool(mutates_state=True)
    def cancel_order(order_id: str) -> str:
        """Cancel an order.

        Args:
            order_id: the order
        """
        return "cancelled"

    asked = []
    agent = Agent(ScriptedBackend([tc("cancel_order", order_id="A1"), "I did not cancel it."]), [cancel_order],
                  approve=lambda t, c: asked.append(c.arguments["order_id"]) or False)
    r = agent.run("cancel A1")
    assert asked == ["A1"] and r.status == "completed"
    assert "ToolApprovalDenied" in last_tool_message(r) and "refused" in last_tool_message(r)


def test_plan_step_every_n_steps():
    be = ScriptedBackend(["Plan: look up OSL.", tc("lookup", code="OSL"), "Plan: answer.", "Oslo Gardermoen."])
    r = Agent(be, [lookup], plan_every=1).run("OSL?")
    assert r.status == "completed" and r.final_answer == "Oslo Gardermoen."
    assert be.requests[0][1].tool_choice == "none" and be.requests[2][1].tool_choice == "none"
    assert r.trajectory.steps[0].notes[0] == "plan: Plan: look up OSL."


def test_final_check_rejects_then_accepts():
    def check(answer, traj):
        return None if "Gardermoen" in answer else "name the airport"

    r = Agent(ScriptedBackend(["Oslo.", "Oslo Gardermoen."]), [], final_check=check).run("OSL?")
    assert r.status == "completed" and r.final_answer == "Oslo Gardermoen." and r.steps == 2
    checks = [s for s in r.trajectory.steps if s.kind == "final_check"]
    assert [c.index for c in checks] == [1, 2] and checks[1].notes == ["final answer accepted"]
    assert "not accepted: name the airport" in checks[0].errors[0].message and checks[0].errors[0].kind == "final_rejected"


def test_long_tool_output_is_cut_with_a_note():
    @tool
    def dump(n: int) -> str:
        """Dump n characters.

        Args:
            n: how many
        """
        return "x" * n

    from keye_agent.agent import ContextPolicy

    r = Agent(ScriptedBackend([tc("dump", n=50_000), "ok"]), [dump],
              context=ContextPolicy(max_tool_output_chars=1000)).run("?")
    msg = [m.text for m in r.trajectory.messages if m.role == "tool"][0]
    assert len(msg) < 1300 and "characters cut here" in msg
    assert any("49000 of 50000 characters removed" in n for n in r.trajectory.steps[0].notes)
    assert r.trajectory.steps[0].tool_results[0].content == "x" * 50_000  # the trajectory keeps it whole


def test_stream_yields_typed_events_in_order():
    be = ScriptedBackend([tc("lookup", code="OSL"), "The airport is Oslo Gardermoen."], stream_chunk_chars=8)
    events = list(Agent(be, [lookup]).stream("OSL?"))
    kinds = [type(e).__name__ for e in events]
    assert kinds[:4] == ["StepStarted", "ToolCallStarted", "ToolCallFinished", "StepFinished"]
    assert isinstance(events[-1], RunFinished) and isinstance(events[-2], FinalAnswer)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "The airport is Oslo Gardermoen."
    assert sum(isinstance(e, TextDelta) for e in events) > 1
    assert [e.step for e in events if isinstance(e, StepStarted)] == [1, 2]
    assert all(isinstance(e, (StepStarted, ToolCallStarted, ToolCallFinished, StepFinished, TextDelta, FinalAnswer,
                              RunFinished, ErrorEvent)) for e in events)


def test_history_and_instructions_are_sent():
    be = ScriptedBackend(["ok"])
    r = Agent(be, [], instructions="Be brief.").run("next", history=[Message.user("hi"), Message.assistant("hello")])
    assert [m.role for m in r.trajectory.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert be.requests[0][0] == 4


def test_arun_inside_an_event_loop_and_run_refuses_nesting():
    async def main():
        agent = Agent(ScriptedBackend(["ok"]), [])
        res = await agent.arun("?")
        with pytest.raises(RuntimeError, match="inside a running event loop"):
            agent.run("?")
        return res

    assert asyncio.run(main()).status == "completed"


def test_step_records_have_timings_and_usage():
    r = Agent(ScriptedBackend([tc("lookup", code="OSL"), "done"]), [lookup]).run("?")
    s = r.trajectory.steps[0]
    assert s.duration_s >= s.model_duration_s >= 0 and s.usage.total_tokens > 0
    assert r.duration_s > 0 and sum(x.usage.total_tokens for x in r.trajectory.steps) == r.usage.total_tokens


def test_step_finished_event_carries_the_record():
    evs = [e for e in Agent(ScriptedBackend(["done"]), []).stream("?") if isinstance(e, StepFinished)]
    assert evs[0].record.turn.text == "done"


def test_duplicate_calls_in_one_turn_run_once_unless_they_change_state():
    n = {"read": 0, "write": 0}

    @tool
    def read(q: str) -> str:
        """Read.

        Args:
            q: query
        """
        n["read"] += 1
        return f"result for {q}"

    @tool(mutates_state=True)
    def write(q: str) -> str:
        """Write.

        Args:
            q: value
        """
        n["write"] += 1
        return "written"

    calls = [ToolCall(id="a", name="read", arguments={"q": "x"}), ToolCall(id="b", name="read", arguments={"q": "x"}),
             ToolCall(id="c", name="write", arguments={"q": "y"}), ToolCall(id="d", name="write", arguments={"q": "y"})]
    r = Agent(ScriptedBackend([AssistantTurn(tool_calls=calls), "done"]), [read, write]).run("?")
    assert n == {"read": 1, "write": 2}
    results = r.trajectory.steps[0].tool_results
    assert [x.call_id for x in results] == ["a", "b", "c", "d"]
    assert results[0].content == "result for x"
    assert results[1].content.startswith("[same call as an earlier one in this turn") and "result for x" in results[1].content


def test_the_callers_registry_is_not_changed_by_the_agent():
    from keye_agent.tools import ToolRegistry

    reg = ToolRegistry([lookup])
    r = Agent(ScriptedBackend([tc("final_answer", answer="x")]), reg).run("?")
    assert r.final_answer == "x" and reg.names == ["lookup"]


def test_an_answer_cut_off_at_the_token_limit_is_not_final():
    turns = [AssistantTurn(text="The airport is Oslo Garder", finish_reason="length"), "Oslo Gardermoen."]
    r = Agent(ScriptedBackend(turns), []).run("?")
    assert r.final_answer == "Oslo Gardermoen." and r.steps == 2
    assert "cut off at the token limit" in r.trajectory.steps[0].errors[0].message


def test_first_tool_choice_applies_to_the_first_step_only():
    be = ScriptedBackend([tc("lookup", code="OSL"), "Oslo Gardermoen."])
    Agent(be, [lookup], first_tool_choice="required").run("?")
    assert [s.tool_choice for _, s in be.requests] == ["required", "auto"]


def test_cancel_reaches_a_running_tool_in_the_sync_stream_too():
    async def hang(q: str) -> str:
        await asyncio.sleep(30)
        return "never"

    t = Tool(name="hang", description="Hangs.", fn=hang, timeout_s=None, retries=0,
             parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    agent = Agent(ScriptedBackend([tc("hang", q="a")]), [t])
    threading.Timer(0.3, agent.cancel).start()
    t0 = time.perf_counter()
    events = list(agent.stream("?"))
    assert events[-1].result.status == "cancelled" and time.perf_counter() - t0 < 10
