"""The example end to end: examples/store.yaml drives the real store API through the real Agent loop.

The model is the scripted backend (examples.store_order.ScriptedShopper: a fixed procedure that reads the tool
results), so these tests prove the registry, the HTTP tools, the API and the loop together, not a model's skill.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keye_agent.agent import Agent
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.errors import KeyeAgentError
from keye_agent.tau.domains.store.api import create_app, serve_in_thread
from keye_agent.tools.yaml_registry import load_registry

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the examples package lives at the repository root, beside keye_agent
    sys.path.insert(0, str(ROOT))

from examples import store_order  # noqa: E402


@pytest.fixture()
def world():  # type: ignore[no-untyped-def]
    app = create_app(test_mode=True)
    with serve_in_thread(app) as base:
        yield app, base


def _registry(base: str, tmp_path: Path | None = None, extra_headers: str = ""):  # type: ignore[no-untyped-def]
    path = store_order.REGISTRY
    if extra_headers and tmp_path is not None:
        text = path.read_text().replace("    User-Agent: keye-agent-store-example\n",
                                        f"    User-Agent: keye-agent-store-example\n{extra_headers}")
        path = tmp_path / "store.yaml"
        path.write_text(text)
    return load_registry(path, env={"STORE_API_URL": base}, backoff_base_s=0.01, backoff_max_s=0.05)


def test_order_completed_through_the_agent_loop(world) -> None:  # type: ignore[no-untyped-def]
    app, base = world
    result = store_order.run_order(store_order.scripted_backend(), base, registry=_registry(base))
    assert result.ok, result.error
    calls = [r for step in result.trajectory.steps for r in step.tool_results if r.name != "final_answer"]
    assert len(calls) > 10
    failed = [r for r in calls if not r.ok]
    assert [r.name for r in failed] == ["create_order", "create_order"]
    assert "store_closed" in failed[0].error and "out_of_stock" in failed[1].error
    # the failures went back to the model as tool messages, and it recovered
    tool_texts = [m.text for m in result.trajectory.messages if m.role == "tool"]
    assert any("store_closed" in t for t in tool_texts) and any("out_of_stock" in t for t in tool_texts)

    # the world after the run: two confirmed orders that together hold exactly what the task asked for
    snap = app.state.store.snapshot()
    orders = list(snap["orders"].values())
    assert {o["status"] for o in orders} == {"confirmed"} and len(orders) == 2
    got: dict[str, int] = {}
    for o in orders:
        for line in o["items"]:
            got[line["sku"]] = got.get(line["sku"], 0) + line["quantity"]
        assert o["deliver_to"] == "Maple Street 12"
    assert got == store_order.WANTED
    assert {o["store_id"] for o in orders} == {"s1", "s2"}
    assert snap["stock"]["s1"]["eggs-10"] == 4 and snap["stock"]["s2"]["coffee-500"] == 4
    # the answer reports what the API returned, not made-up values
    for o in orders:
        assert o["id"] in result.final_answer and f"{o['total']:.2f}" in result.final_answer


def test_transient_faults_are_invisible_to_the_model(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every call of the run meets a 500 first (the registry-wide header asks the server for one per request
    path); the registry retries, and the model's view of the run is the same as without faults."""
    app, base = world
    reg = _registry(base, tmp_path, extra_headers='    X-Fault: "500;times=1;id=e2e"\n')
    result = store_order.run_order(store_order.scripted_backend(), base, registry=reg)
    assert result.ok, result.error
    calls = [r for step in result.trajectory.steps for r in step.tool_results if r.name != "final_answer"]
    assert any(r.attempts == 2 for r in calls)
    assert [r.name for r in calls if not r.ok] == ["create_order", "create_order"]
    assert len(app.state.store.snapshot()["orders"]) == 2


def test_a_fixed_script_can_drive_the_same_tools(world) -> None:  # type: ignore[no-untyped-def]
    """Raw model text, parsed as a local model's output is: a malformed call is reported back and corrected."""
    app, base = world
    backend = ScriptedBackend([
        '<tool_call>\n{"name": "get_store", "arguments": {"store": "s1"}}\n</tool_call>',
        '<tool_call>\n{"name": "get_store", "arguments": {"store_id": "s1"}}\n</tool_call>',
        "Corner Grocer Old Town is open until 22:00.",
    ])
    result = Agent(backend, _registry(base), max_steps=5, final_answer_tool=False).run("When does s1 close?")
    assert result.ok
    first, second = (s.tool_results[0] for s in result.trajectory.steps[:2])
    assert not first.ok and first.error_type == "ToolValidationError" and "store_id" in first.error
    assert second.ok and json.loads(second.content)["hours_today"] == "07:00-22:00"


def test_example_script_runs_as_users_run_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "examples.store_order", "--model", "scripted", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["status"] == "completed"
    assert len([c for c in out["tool_calls"] if c["name"] != "final_answer"]) > 10
    assert sorted(o["store_id"] for o in out["orders"].values()) == ["s1", "s2"]


def test_unknown_model_spec_is_refused() -> None:
    with pytest.raises((SystemExit, KeyeAgentError)):
        store_order.build_backend("nonsense-model", None)
