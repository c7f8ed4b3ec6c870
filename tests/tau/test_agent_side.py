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

