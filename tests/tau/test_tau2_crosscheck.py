"""Our evaluator against tau2-bench's own: fixtures/tau2_mock_crosscheck.json holds 20 mock simulations run by
keye-agent whose rewards tau2-bench's `tau2 evaluate-trajs` recomputed (see fixtures/make_mock_run.py). Here our
evaluator scores the same trajectories again and must agree on every component; the file being tau2's own
re-serialisation of our results, it also shows that each side reads the other's format."""

from __future__ import annotations

import asyncio
from pathlib import Path

from keye_agent.tau import Results, evaluate

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tau2_mock_crosscheck.json"


def _met(checks, key="met"):
    return [c[key] for c in checks or []]


def test_our_rewards_equal_tau2_recomputed_rewards(mock_domain) -> None:
    results = Results.load(FIXTURE)
    assert len(results.simulations) == 20
    rewards = set()
    for sim in results.simulations:
        theirs = sim.reward_info
        assert theirs is not None
        task = mock_domain.task(sim.task_id)
        ours = asyncio.run(evaluate(sim.messages, sim.termination_reason, task, mock_domain))
        where = (sim.task_id, sim.trial)
        assert ours["reward"] == theirs["reward"], where
        assert ours["reward_breakdown"] == (theirs["reward_breakdown"] or {}), where
        assert ours["db_check"] == theirs["db_check"], where
        assert _met(ours["env_assertions"]) == _met(theirs["env_assertions"]), where
        assert _met(ours["action_checks"], "action_match") == _met(theirs["action_checks"], "action_match"), where
        assert _met(ours["communicate_checks"]) == _met(theirs["communicate_checks"]), where
        assert [c["tool_type"] for c in ours["action_checks"] or []] == \
            [c["tool_type"] for c in theirs["action_checks"] or []], where
        # and the rewards our runner recorded when it ran them
        assert sim.info["keye_agent_reward_info"]["reward"] == theirs["reward"], where
        rewards.add(theirs["reward"])
    assert rewards == {0.0, 1.0}  # both outcomes are exercised
    failed_calls = [m for s in results.simulations for m in s.messages if m.role == "tool" and m.error]
    assert failed_calls and all(m.content == "Error: Task task_99 not found" for m in failed_calls)

