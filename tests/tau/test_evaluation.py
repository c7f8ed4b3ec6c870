"""Rewards move the way tau2-bench's do: a wrong or missing action lowers them, premature endings score 0, NL
assertions count only when a judge model judged them, and limits end simulations with the right reason.
The agents and users here are scripted backends (no model is faked: the scripts are the participants)."""

from __future__ import annotations

import asyncio
import json

from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tau import IdleAgent, Limits, OracleUser, evaluate, run_simulation
from keye_agent.tau.messages import user_view
from keye_agent.types import AssistantTurn, ToolCall


def _call(name: str, **args) -> AssistantTurn:
    return AssistantTurn(tool_calls=[ToolCall(id=f"c_{name}", name=name, arguments=args)])


def _run(domain, task_id, agent, user=None, limits=None, judge=None):
    task = domain.task(task_id)

    async def go():
        sim = await run_simulation(task, domain, agent, user or OracleUser(task), limits=limits)
        sim.reward_info = await evaluate(sim.messages, sim.termination_reason, task, domain, judge=judge)
        return sim

    return asyncio.run(go())


def test_wrong_argument_fails_db(mock_domain) -> None:
    agent = ScriptedBackend([_call("update_task_status", task_id="task_1", status="pending"), "Updated."])
    sim = _run(mock_domain, "update_task_1", agent)
    assert sim.termination_reason == "user_stop"
    assert sim.reward == 0.0
    assert sim.reward_info["db_check"] == {"db_match": False, "db_reward": 0.0}


def test_missing_action_fails_db_and_action(mock_domain) -> None:
    sim = _run(mock_domain, "impossible_task_1", IdleAgent())
    assert sim.reward_info["reward_breakdown"] == {"DB": 1.0, "ACTION": 0.0}
    assert sim.reward == 0.0
    sim = _run(mock_domain, "update_task_1", IdleAgent())
    assert sim.reward_info["reward_breakdown"]["DB"] == 0.0


def test_missing_communication_lowers_reward(mock_domain) -> None:
    agent = ScriptedBackend([_call("update_task_status", task_id="task_2", status="completed"), "Done."])
    sim = _run(mock_domain, "update_task_with_initialization_data", agent)
    assert sim.reward_info["reward_breakdown"] == {"DB": 1.0, "COMMUNICATE": 0.0}
    agent = ScriptedBackend([_call("update_task_status", task_id="task_2", status="completed"),
                             "The agent acknowledged the previous context, The agent confirmed the task status was "
                             "updated successfully"])
    sim = _run(mock_domain, "update_task_with_initialization_data", agent)
    assert sim.reward == 1.0  # commas in the agent's text are ignored, as upstream does


def test_recovery_after_a_failed_call(mock_domain) -> None:
    agent = ScriptedBackend([_call("update_task_status", task_id="task_9", status="completed"),
                             _call("update_task_status", task_id="task_1", status="completed"), "Done."])
    sim = _run(mock_domain, "update_task_1", agent)
    errors = [m for m in sim.messages if m.role == "tool" and m.error]
    assert [m.content for m in errors] == ["Error: Task task_9 not found"]
    assert sim.reward == 1.0


def test_nl_assertions_need_a_judge(mock_domain) -> None:
    task = mock_domain.task("create_task_1")
    data = task.model_dump(mode="json")
    data["evaluation_criteria"]["reward_basis"] = ["DB", "NL_ASSERTION"]
    t2 = type(task).model_validate(data)
    agent = ScriptedBackend([_call("create_task", user_id="user_1", title="Important Meeting"), "Created task_2."])

    async def go(judge):
        sim = await run_simulation(t2, mock_domain, agent.__class__(list(agent._script)), OracleUser(t2))
        return await evaluate(sim.messages, sim.termination_reason, t2, mock_domain, judge=judge)

    unjudged = asyncio.run(go(None))
    assert unjudged["reward"] == 1.0 and "NL_ASSERTION" not in unjudged["reward_breakdown"]
    assert unjudged["info"]["unjudged"] == ["NL_ASSERTION"]
    verdict = {"results": [{"expectedOutcome": "The agent confirmed the task was created successfully",
                            "reasoning": "It said so.", "metExpectation": False}]}
    judged = asyncio.run(go(ScriptedBackend([json.dumps(verdict)])))
    assert judged["reward_breakdown"]["NL_ASSERTION"] == 0.0 and judged["reward"] == 0.0
    assert judged["nl_assertions"][0]["justification"] == "It said so."


def test_too_many_errors_and_max_steps_score_zero(mock_domain) -> None:
    bad = [_call("update_task_status", task_id=f"task_{i}", status="completed") for i in range(10, 30)]
    sim = _run(mock_domain, "update_task_1", ScriptedBackend(bad), limits=Limits(max_errors=3))
    assert sim.termination_reason == "too_many_errors"
    assert sim.reward == 0.0 and "prematurely" in sim.reward_info["info"]["note"]
    chatty_user = ScriptedBackend(["Hello?"] * 50)
    sim = _run(mock_domain, "update_task_1", ScriptedBackend(["Sure."] * 50), user=chatty_user,
               limits=Limits(max_steps=6))
    assert sim.termination_reason == "max_steps" and sim.reward == 0.0


def test_agent_stop_token_and_model_failure(mock_domain) -> None:
    sim = _run(mock_domain, "update_task_1", ScriptedBackend(["Goodbye ###STOP###"]))
    assert sim.termination_reason == "agent_stop"
    sim = _run(mock_domain, "update_task_1", ScriptedBackend([]))  # runs out of turns: a backend failure
    assert sim.termination_reason == "agent_error" and sim.reward == 0.0


def test_user_sees_roles_swapped_and_no_agent_tools(mock_domain) -> None:
    agent = ScriptedBackend([_call("update_task_status", task_id="task_1", status="completed"), "Done."])
    sim = _run(mock_domain, "update_task_1", agent)
    view = user_view(sim.messages)
    assert [m.role for m in view] == ["user", "assistant", "user", "assistant"]
    assert all(not m.tool_calls for m in view)


def test_user_prompt_uses_tau2_guidelines_and_the_scenario(mock_domain) -> None:
    """For a tau2 domain the user model gets upstream's guidelines from the data folder, then the scenario."""
    seen = []

    def user_turn(messages, tools):
        seen.append((messages[0].text, tools))
        return "###STOP###"

    _run(mock_domain, "update_task_with_user_tools", IdleAgent(), user=ScriptedBackend([user_turn]))
    system, tools = seen[0]
    assert "User Simulation Guidelines" in system and "<PERSONA_GUIDELINES>" not in system
    assert "You have some tools" in system  # the tools variant, since this task gives the user tools
    assert "<scenario>" in system and "check_notifications" in system
    assert {t["function"]["name"] for t in tools} == {"check_notifications", "dismiss_notification"}


def test_timeout_ends_a_simulation(mock_domain) -> None:
    class Stuck(IdleAgent):
        async def agenerate(self, messages, tools, settings):
            await asyncio.sleep(30)

    sim = _run(mock_domain, "update_task_1", Stuck(), limits=Limits(timeout_s=0.3))
    assert sim.termination_reason == "timeout" and sim.reward == 0.0


def _with_history(domain, history):
    from keye_agent.tau import parse_tasks

    data = domain.task("update_task_1").model_dump(mode="json", exclude_unset=True)
    data["id"] = "history_variant"
    data["initial_state"] = {"message_history": history}
    return parse_tasks([data])[0]


def test_history_ending_with_user_message_or_pending_call(mock_domain) -> None:
    """After a history ending with a user message the agent speaks first; a history ending with the agent's pending
    tool call is refused with a clear error (upstream cannot replay it either)."""
    import pytest

    from keye_agent.tau import TauError

    history = [{"role": "user", "content": "Please mark task_1 completed."}]
    task = _with_history(mock_domain, history)

    async def go(task, agent_script):
        sim = await run_simulation(task, mock_domain, ScriptedBackend(agent_script), ScriptedBackend(["###STOP###"]))
        sim.reward_info = await evaluate(sim.messages, sim.termination_reason, task, mock_domain)
        return sim

    sim = asyncio.run(go(task, [_call("update_task_status", task_id="task_1", status="completed"), "Done."]))
    assert sim.termination_reason == "user_stop" and sim.reward == 1.0
    assert [m.role for m in sim.messages[:3]] == ["user", "assistant", "tool"]
    call = {"id": "h1", "name": "update_task_status", "arguments": {"task_id": "task_1", "status": "completed"}}
    pending = _with_history(mock_domain, [*history, {"role": "assistant", "tool_calls": [call]}])
    with pytest.raises(TauError, match="must not end with the agent's tool calls"):
        asyncio.run(go(pending, ["Done."]))


def test_refused_repeats_stay_out_of_the_trajectory(mock_domain) -> None:
    """The agent loop refuses an exact repeat of a failed call without running it; such a call never reached the
    environment, so the trajectory (which the evaluator replays) leaves it out, and it still counts as an error."""
    bad = _call("update_task_status", task_id="task_9", status="completed")
    agent = ScriptedBackend([bad, bad, _call("update_task_status", task_id="task_1", status="completed"), "Done."])
    sim = _run(mock_domain, "update_task_1", agent)
    calls = [c.arguments["task_id"] for m in sim.messages for c in m.tool_calls or []]
    assert calls == ["task_9", "task_1"]
    assert sim.info["tool_errors"] == 2 and "refused without running" in sim.info["notes"][0]
    assert sim.reward == 1.0
