"""Our results files in tau2-bench's own ``Results`` model, field for field, and pass^k as tau2-bench computes it.

fixtures/tau2_results_schema.json is the JSON Schema tau2-bench's code gives for its ``Results`` model (see
fixtures/make_tau2_format.py). Each results file our runner writes, for every domain, must validate against it with
every object closed (``additionalProperties: false``): each field we write is one of tau2's, with its type and
allowed values, and each field tau2 requires is there. tau2's pydantic models ignore unknown keys, so a field of
ours outside its model would load and be lost on its first save; the closed schema catches that. Two keys are let
through: ``info.keye_agent`` (this runner's provenance, which tau2 ignores) and ``annotations`` of tasks (tau2's own
airline tasks carry it and tau2's Task model ignores it). Loading the same files with tau2-bench's code loses
nothing else (make_tau2_format.py prints that round trip).
"""

from __future__ import annotations

import asyncio
import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tau import OracleAgent, OracleUser, Results, RunSettings, load_domain, run_tasks, summarize
from keye_agent.types import AssistantTurn, ToolCall

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LET_THROUGH = {"Info": {"keye_agent"}, "Task": {"annotations"}}
DOMAINS = ["mock", "airline", "retail", "store"]


def _close(node: Any, allowed: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
            node["properties"].update({k: {} for k in allowed})
        for v in node.values():
            _close(v)
    elif isinstance(node, list):
        for v in node:
            _close(v)


@cache
def tau2_validator() -> jsonschema.Draft202012Validator:
    schema = copy.deepcopy(json.loads((FIXTURES / "tau2_results_schema.json").read_text()))
    for name, d in schema["$defs"].items():
        _close(d, LET_THROUGH.get(name, set()))
    _close({k: v for k, v in schema.items() if k != "$defs"})
    return jsonschema.Draft202012Validator(schema)


def tau2_problems(data: dict[str, Any]) -> list[str]:
    """Where ``data`` departs from tau2's Results model (closed), each as path: message."""
    out = []
    for e in tau2_validator().iter_errors(data):
        best = jsonschema.exceptions.best_match([e, *e.context]) if e.context else e
        out.append(f"{'/'.join(map(str, best.absolute_path))}: {best.message[:300]}")
    return out


def sloppy(task) -> ScriptedBackend:
    """An agent that calls a tool that does not exist, writes an unparsable call, then one gold call, then talks."""
    gold = [AssistantTurn(tool_calls=[ToolCall(id="g1", name=a.name, arguments=dict(a.arguments))])
            for a in task.gold_actions[:1]]
    return ScriptedBackend([AssistantTurn(tool_calls=[ToolCall(id="s0", name="no_such_tool", arguments={})]),
                            '<tool_call>\n{"name": "x", "arguments": {oops}\n</tool_call>', *gold, "Done."]
                           + ["Anything else?"] * 8, name="sloppy")


def chatty_user(task, trial) -> ScriptedBackend:
    return ScriptedBackend(["Hello, I need help with my account."] + ["###STOP###"] * 5, name="scripted-user")


def write_results(domain, out: Path) -> list[Path]:
    """Two results files of ``domain``: the oracle over 2 trials, and a sloppy agent with a scripted user."""
    tasks = domain.tasks[:3]
    files = [out / f"{domain.name}_oracle.json", out / f"{domain.name}_sloppy.json"]
    asyncio.run(run_tasks(domain, tasks, lambda t, k: OracleAgent(t), lambda t, k: OracleUser(t),
                          RunSettings(num_trials=2, save_to=files[0], agent_name="oracle", user_name="oracle")))
    asyncio.run(run_tasks(domain, tasks, lambda t, k: sloppy(t), chatty_user,
                          RunSettings(save_to=files[1], agent_name="scripted:sloppy", user_name="scripted:user")))
    return files


def check_tau2_format(path: Path, domain) -> None:
    data = json.loads(path.read_text())
    problems = tau2_problems(data)
    assert not problems, f"{path.name}:\n" + "\n".join(problems[:10])
    assert data["info"]["environment_info"]["domain_name"] == domain.name
    for sim in data["simulations"]:
        for m in sim["messages"]:
            if m["role"] in ("user", "assistant"):
                assert m["content"] or m["tool_calls"]  # tau2's Message.validate refuses a message with neither


@pytest.mark.parametrize("name", DOMAINS)
def test_results_of_every_domain_are_tau2_results_field_for_field(name, tau2_data, tmp_path) -> None:
    domain = load_domain(name, tau2_data=tau2_data)
    oracle, sloppy_run = write_results(domain, tmp_path)
    for f in (oracle, sloppy_run):
        check_tau2_format(f, domain)
    info = json.loads(oracle.read_text())["info"]
    assert info["agent_info"]["implementation"] == "oracle_agent"  # scripted results never pass for a model's
    assert info["user_info"]["implementation"] == "oracle_user"
    sims = json.loads(sloppy_run.read_text())["simulations"]
    assert any(m["role"] == "tool" and m["error"] for s in sims for m in s["messages"])  # errors are exercised


def test_the_closed_schema_catches_what_tau2_would_drop_or_refuse() -> None:
    data = json.loads((FIXTURES / "tau2_metrics_crosscheck.json").read_text())["results"]
    assert not tau2_problems(data)
    bad = copy.deepcopy(data)
    bad["simulations"][0]["extra_field"] = 1
    bad["simulations"][1]["termination_reason"] = "crashed"
    bad["info"]["agent_info"]["model"] = "x"
    found = " | ".join(tau2_problems(bad))
    assert "extra_field" in found and "crashed" in found and "'model' was unexpected" in found


def test_summary_figures_equal_tau2_compute_metrics() -> None:
    """A mock run of mixed outcomes (4 trials, task i met on i % 5 of them, one simulation marked
    infrastructure_error): our figures against tau2-bench's compute_metrics on the same file."""
    fixture = json.loads((FIXTURES / "tau2_metrics_crosscheck.json").read_text())
    theirs = fixture["tau2_compute_metrics"]
    s = summarize(Results.model_validate(fixture["results"]))
    assert s.avg_reward == pytest.approx(theirs["avg_reward"])
    assert {str(k): v for k, v in s.pass_hat.items()} == pytest.approx(theirs["pass_hat_ks"])
    assert (s.num_simulations, s.num_tasks, s.infra_errors) == \
        (theirs["total_simulations"], theirs["total_tasks"], theirs["infra_error_count"])
    assert len(s.pass_hat) == 3  # the task that lost a simulation has 3 trials left: k stops there, as in tau2
