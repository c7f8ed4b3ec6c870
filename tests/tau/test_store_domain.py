"""The store domain through the real orchestrator, agent loop, YAML tools and in-process store API: the oracle
scores 1.0 on every task, an agent that does nothing scores 0 on every task, wrong actions lose reward, concurrent
simulations each get their own world, and the shipped tasks.json is what its specs produce on today's API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tau import IdleAgent, OracleAgent, OracleUser, RunSettings, load_domain, run_tasks
from keye_agent.tau.domains.store import build_tasks
from keye_agent.types import AssistantTurn, ToolCall

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store():
    return load_domain("store")


def _run(domain, tasks, agent, user=None, **kw):
    return asyncio.run(run_tasks(domain, tasks, agent, user or (lambda t, k: OracleUser(t)),
                                 RunSettings(max_concurrency=8, **kw)))


def test_store_tasks_shape(store) -> None:
    assert len(store.tasks) >= 20
    assert all(t.gold_actions for t in store.tasks)
    long_with_failure = [s for s in build_tasks.SPECS if len(s.actions) > 10 and s.fails]
    assert len(long_with_failure) >= 3


def test_oracle_scores_one_and_gold_failures_are_as_specified(store) -> None:
    res = _run(store, store.tasks, lambda t, k: OracleAgent(t))
    specs = {s.id: s for s in build_tasks.SPECS}
    for sim in res.simulations:
        assert sim.termination_reason == "user_stop", sim.task_id
        assert sim.reward == 1.0, (sim.task_id, sim.reward_info)
        gold = sim.reward_info["info"]["env"]["gold_actions"]
        assert {i for i, g in enumerate(gold) if not g["ok"]} == specs[sim.task_id].fails, sim.task_id
        live_errors = [m for m in sim.messages if m.role == "tool" and m.error]
        assert len(live_errors) == len(specs[sim.task_id].fails), sim.task_id


def test_idle_agent_scores_zero_on_every_task(store) -> None:
    res = _run(store, store.tasks, lambda t, k: IdleAgent(t))
    assert len(res.simulations) == len(store.tasks)
    assert {s.task_id: s.reward for s in res.simulations} == {t.id: 0.0 for t in store.tasks}


def test_wrong_store_loses_the_reward(store) -> None:
    task = store.task("eggs_from_corner_grocer")
    wrong = ScriptedBackend([
        AssistantTurn(tool_calls=[ToolCall(id="c1", name="create_order", arguments={
            "store_id": "s3", "items": [{"sku": "eggs-10", "quantity": 2}], "deliver_to": "Maple Street 12"})]),
        "Ordered: o-1001, total 9.57.",
    ])
    (sim,) = _run(store, [task], lambda t, k: wrong).simulations
    assert sim.reward_info["reward_breakdown"]["DB"] == 0.0 and sim.reward == 0.0


def test_concurrent_simulations_each_have_their_own_store(store) -> None:
    tasks = [store.task("eggs_from_corner_grocer"), store.task("ten_bags_of_coffee")]
    res = _run(store, tasks, lambda t, k: OracleAgent(t), num_trials=8)
    assert len(res.simulations) == 16
    for sim in res.simulations:
        assert sim.reward == 1.0
        first_order = next(json.loads(m.content) for m in sim.messages
                           if m.role == "tool" and not m.error and '"status": "confirmed"' in (m.content or ""))
        assert first_order["id"] == "o-1001"  # a shared world would hand out o-1002, o-1003...


def test_shipped_tasks_match_their_specs() -> None:
    shipped = json.loads((ROOT / "keye_agent/tau/domains/store/tasks.json").read_text())
    built = [asyncio.run(build_tasks.build_task(s)) for s in build_tasks.SPECS]
    assert built == shipped


def test_domain_tools_are_the_example_registry_tools() -> None:
    example = ROOT / "examples" / "store.yaml"
    if not example.is_file():
        pytest.skip("examples/store.yaml is not in this checkout")
    import httpx

    from keye_agent.tau.domains.store.api import create_app
    from keye_agent.tau.domains.store.toolkit import StoreToolkit
    from keye_agent.tools.yaml_registry import load_registry

    ours = StoreToolkit().registry()
    theirs = load_registry(example, transport=httpx.ASGITransport(app=create_app()), env={})
    assert ours.schemas() == theirs.schemas()
    assert [t.mutates_state for t in ours] == [t.mutates_state for t in theirs]
