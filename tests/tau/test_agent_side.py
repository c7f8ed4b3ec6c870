"""The tau agent side on our loop: its corrections name only the tools it offers (tau runs offer no final_answer).
The agent is a scripted backend (a participant, no model faked); the user is the oracle user."""

from __future__ import annotations

import asyncio

from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tau import OracleUser, run_simulation
from keye_agent.types import AssistantTurn


def test_corrections_never_mention_final_answer_which_tau_runs_do_not_offer(mock_domain) -> None:
    seen: list[str] = []

    def done(messages, tools):
        seen.extend(m.text for m in messages if m.role == "user")
        assert "final_answer" not in {t["function"]["name"] for t in tools or []}
        return "Done. ###STOP###"

    cut = AssistantTurn(text="I will", finish_reason="length")
    agent = ScriptedBackend([AssistantTurn(text=""), cut, done])
    task = mock_domain.task("update_task_1")
    sim = asyncio.run(run_simulation(task, mock_domain, agent, OracleUser(task)))
    corrections = [t for t in seen if t.startswith("Your last reply")]
    assert len(corrections) == 2 and sim.termination_reason == "agent_stop"
    assert all("final_answer" not in t for t in corrections)



def test_every_kind_of_correction_in_a_tau_run_names_only_offered_tools(mock_domain) -> None:
    """Unknown tool, unparsable call, arguments failing the schema, a failing tool repeated unchanged: each
    correction the agent reads names only tools the run offered (never final_answer)."""
    seen: list[str] = []
    offered: set[str] = set()

    def done(messages, tools):
        offered.update(t["function"]["name"] for t in tools or [])
        seen.extend(m.text for m in messages if m.role in ("user", "tool"))
        return "Done. ###STOP###"

    bad_task = '<tool_call>\n{"name": "update_task_status", "arguments": {"task_id": "task_99", "status": "completed"}}' \
               '\n</tool_call>'
    agent = ScriptedBackend([
        '<tool_call>\n{"name": "lookup_everything", "arguments": {}}\n</tool_call>',
        '<tool_call>\n{"name": "get_users", "arguments": {oops}\n</tool_call>',
        '<tool_call>\n{"name": "update_task_status", "arguments": {"task_id": 7}}\n</tool_call>',
        '<tool_call>\n{"name": "get_users", "arguments": {}}\n</tool_call>',  # a success: errors stop being consecutive
        bad_task, bad_task, done])
    task = mock_domain.task("update_task_1")
    sim = asyncio.run(run_simulation(task, mock_domain, agent, OracleUser(task)))
    assert sim.termination_reason == "agent_stop"
    assert offered and "final_answer" not in offered
    corrections = [t for t in seen if "Error" in t or t.startswith("Your last reply")]
    assert len(corrections) >= 4, seen
    assert all("final_answer" not in t for t in seen)
    assert any("lookup_everything" in t for t in corrections)  # the unknown name is quoted back, the offered listed
    assert any("already failed" in t for t in corrections)  # the repeat was caught
