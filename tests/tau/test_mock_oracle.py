"""The oracle through the real orchestrator on tau2-bench's mock domain: from each task's initial state, the gold
actions through our tools give exactly the accepted/raised pattern, database changes and database hashes that
tau2-bench's own code gives (fixtures/tau2_expected/mock.json), and every task scores 1.0 except the two listed
below, whose gold criteria cannot all be met."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tau import Environment, OracleAgent, OracleUser, evaluate, run_simulation
from keye_agent.types import AssistantTurn, ToolCall

from ._helpers import expected_end_states, json_pointer_diff

# task id -> why the oracle (gold actions + communicate_info, nothing else) cannot score 1.0
UNSATISFIABLE = {
    "update_task_with_history_and_env_assertions":
        "no gold actions, yet its only reward component (ENV_ASSERTION) needs task_2 completed: only a call beyond "
        "the gold actions satisfies it (test_history_task_needs_a_call_beyond_gold shows that call scoring 1.0)",
    "update_task_with_user_tools":
        "DB compares the user database too; the gold actions leave notif_1 unread, while the ENV_ASSERTION needs it "
        "read, so no trajectory meets both (test_user_tools_task_criteria_conflict shows each side)",
}


async def _oracle_run(domain, task, user_model=None, agent_model=None) -> tuple[Any, dict[str, Any]]:
    seen: dict[str, Any] = {}
    start = await domain.make_environment()
    init = task.initial_state
    await start.set_state(init.initialization_data if init else None, init.initialization_actions if init else None,
                          list((init.message_history if init else None) or []))
    seen["db0"], seen["udb0"] = start.tools.dump_db(), start.user_tools.dump_db()

    async def capture(env: Environment) -> None:
        seen["db1"], seen["udb1"] = env.tools.dump_db(), env.user_tools.dump_db()
        seen["hash"] = env.db_hash()

    sim = await run_simulation(task, domain, agent_model or OracleAgent(task), user_model or OracleUser(task),
                               on_finish=capture)
    sim.reward_info = await evaluate(sim.messages, sim.termination_reason, task, domain)
    return sim, seen


def _action_pattern(sim) -> list[dict[str, Any]]:
    """Each oracle call of the trajectory with whether the tool accepted it."""
    out = []
    msgs = sim.messages
    for i, m in enumerate(msgs):
        for j, c in enumerate(m.tool_calls or []):
            if c.id.startswith("oracle_"):
                res = msgs[i + 1 + j]
                rec = {"name": c.name, "ok": not res.error}
                if res.error:
                    rec["error"] = res.content
                out.append(rec)
    return out


def test_oracle_reproduces_upstream_and_scores(mock_domain, tau2_data) -> None:
    expected = expected_end_states("mock")
    assert {t.id for t in mock_domain.tasks} == set(expected)
    rewards = {}
    for task in mock_domain.tasks:
        sim, seen = asyncio.run(_oracle_run(mock_domain, task))
        exp = expected[task.id]
        assert sim.termination_reason == "user_stop", task.id
        assert _action_pattern(sim) == exp["actions"], task.id
        assert json_pointer_diff(seen["db0"], seen["db1"]) == exp["db_changes"], task.id
        assert json_pointer_diff(seen["udb0"], seen["udb1"]) == exp["user_db_changes"], task.id
        # our hash is upstream's digest of the same serialisation, so it agrees too
        assert seen["hash"] == exp["db_hash"], task.id
        rewards[task.id] = sim.reward
    for tid, r in rewards.items():
        if tid in UNSATISFIABLE:
            assert r == 0.0, (tid, UNSATISFIABLE[tid])
        else:
            assert r == 1.0, tid


def test_history_task_needs_a_call_beyond_gold(mock_domain) -> None:
    task = mock_domain.task("update_task_with_history_and_env_assertions")
    agent = ScriptedBackend([
        AssistantTurn(tool_calls=[ToolCall(id="c1", name="update_task_status",
                                           arguments={"task_id": "task_2", "status": "completed"})]),
        "Task task_2 is now completed.",
    ])
    sim, _ = asyncio.run(_oracle_run(mock_domain, task, agent_model=agent))
    assert sim.reward == 1.0
    assert sim.reward_info["reward_breakdown"] == {"ENV_ASSERTION": 1.0}


def test_user_tools_task_criteria_conflict(mock_domain) -> None:
    """With the user dismissing the notification (as its instructions say) the assertion passes and DB fails;
    without it (the oracle), DB passes and the assertion fails."""
    task = mock_domain.task("update_task_with_user_tools")
    user = ScriptedBackend([
        AssistantTurn(tool_calls=[ToolCall(id="u1", name="check_notifications", arguments={})]),
        "I finished task_1, please mark it completed.",
        AssistantTurn(tool_calls=[ToolCall(id="u2", name="dismiss_notification",
                                           arguments={"notification_id": "notif_1"})]),
        "###STOP###",
    ])
    sim, seen = asyncio.run(_oracle_run(mock_domain, task, user_model=user))
    assert seen["udb1"]["notifications"]["notif_1"]["status"] == "read"
    assert sim.reward_info["reward_breakdown"] == {"DB": 0.0, "ENV_ASSERTION": 1.0, "ACTION": 1.0}
    user_tool_msgs = [m for m in sim.messages if m.role == "tool" and m.requestor == "user"]
    assert [m.error for m in user_tool_msgs] == [False, False]
    assert "notif_1" in (user_tool_msgs[0].content or "")

    sim2, _ = asyncio.run(_oracle_run(mock_domain, task))
    assert sim2.reward_info["reward_breakdown"] == {"DB": 1.0, "ENV_ASSERTION": 0.0, "ACTION": 1.0}


@pytest.mark.parametrize("task_set", ["v0.1.0"])
def test_paper_task_set_loads_and_oracle_scores(tau2_data, task_set) -> None:
    from keye_agent.tau import load_domain

    domain = load_domain("mock", tau2_data=tau2_data, task_set=task_set)
    assert len(domain.tasks) >= 9
    assert domain.select(split="base") == domain.tasks  # the paper release had no split files
    for task in domain.tasks:
        sim, _ = asyncio.run(_oracle_run(domain, task))
        if task.id in UNSATISFIABLE or not task.evaluation_criteria:
            continue
        assert sim.reward == 1.0, task.id
