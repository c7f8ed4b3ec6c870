"""tau2-bench's airline and retail domains with our tools, from the data shipped in the package.

The oracle runs every task of each domain through the real orchestrator, agent loop, tool registry and evaluator;
from each task's initial state its gold actions must give exactly the accepted/raised pattern, the database changes
and the database hash that tau2-bench's own code gives (fixtures/tau2_expected/, produced by upstream's code, see
the README there), and the simulation must score 1.0 on what can be scored without a judge model."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest

from keye_agent.errors import ConfigError
from keye_agent.tau import Environment, OracleAgent, OracleUser, evaluate, load_domain, run_simulation
from keye_agent.tau.domains.tau2 import BUNDLED
from keye_agent.tau.lazydb import LazyBase, LazyDB
from keye_agent.tau.toolkit import json_hash

from ._helpers import expected_end_states, json_pointer_diff

DOMAINS = ["airline", "retail"]


@pytest.fixture(scope="module", params=DOMAINS)
def domain(request):
    return load_domain(request.param, tau2_data=BUNDLED)


async def _oracle_run(domain, task) -> tuple[Any, dict[str, Any]]:
    seen: dict[str, Any] = {}
    seen["db0"] = (await domain.make_environment()).tools.dump_db()

    async def capture(env: Environment) -> None:
        seen["db1"], seen["hash"] = env.tools.dump_db(), env.db_hash()

    sim = await run_simulation(task, domain, OracleAgent(task), OracleUser(task), on_finish=capture)
    sim.reward_info = await evaluate(sim.messages, sim.termination_reason, task, domain)
    return sim, seen


def _action_pattern(sim) -> list[tuple[str, bool, str | None]]:
    """Each oracle call of the trajectory: its name, whether the tool accepted it, and the error text if not."""
    out = []
    for i, m in enumerate(sim.messages):
        for j, c in enumerate(m.tool_calls or []):
            if c.id.startswith("oracle_"):
                res = sim.messages[i + 1 + j]
                out.append((c.name, not res.error, res.content.removeprefix("Error: ") if res.error else None))
    return out


def test_oracle_reproduces_upstream_on_every_task(domain) -> None:
    expected = expected_end_states(domain.name)
    assert {t.id for t in domain.tasks} == set(expected) and len(expected) == {"airline": 50, "retail": 114}[
        domain.name]
    for task in domain.tasks:
        sim, seen = asyncio.run(_oracle_run(domain, task))
        exp = expected[task.id]
        assert sim.termination_reason == "user_stop", task.id
        theirs = [(a["name"], a["ok"], a["error"].split(": ", 1)[1] if "error" in a else None) for a in exp["actions"]]
        assert _action_pattern(sim) == theirs, task.id
        assert json_pointer_diff(seen["db0"], seen["db1"]) == exp["db_changes"], task.id
        assert seen["hash"] == exp["db_hash"], task.id  # upstream's digest of the same serialisation
        # the gold environment the evaluator builds agrees with the live one, and the oracle says what it must
        assert sim.reward_info["db_check"]["db_match"] is True, task.id
        assert sim.reward == 1.0, (task.id, sim.reward_info["reward_breakdown"])


def test_task_sets_and_splits(domain) -> None:
    base = domain.select(split="base")
    assert [t.id for t in base] == [t.id for t in domain.tasks]
    assert len(domain.select(split="train")) + len(domain.select(split="test")) == len(base)
    paper = load_domain(domain.name, tau2_data=BUNDLED, task_set="v0.1.0")
    assert paper.tasks and [t.id for t in paper.tasks] != [] and paper.policy == domain.policy
    assert domain.user_guidelines["plain"]  # tau2-bench's own user-simulation guidelines


def test_tau2_data_folder_is_read_when_given(tmp_path) -> None:
    """--tau2-data points at another copy of tau2-bench's data: its files are the ones used."""
    src = BUNDLED / "data" / "tau2" / "domains" / "airline"
    dst = tmp_path / "data" / "tau2" / "domains" / "airline"
    shutil.copytree(src, dst)
    (dst / "policy.md").write_text("A policy edited here.")
    d = load_domain("airline", tau2_data=tmp_path)
    assert d.policy == "A policy edited here." and d.source == str(dst)
    (dst / "db.json.gz").write_bytes(b"not gzip")
    with pytest.raises(ConfigError, match="not a valid gzip file") as e:
        load_domain("airline", tau2_data=tmp_path)
    assert "db.json.gz" in str(e.value)


def test_airline_tools_refuse_what_upstream_refuses() -> None:
    d = load_domain("airline", tau2_data=BUNDLED)

    async def go() -> list[str]:
        env = await d.make_environment()
        kit = env.tools
        out = []
        for name, args in [("get_user_details", {"user_id": "nobody"}),
                           ("update_reservation_passengers", {"reservation_id": "4WQ150", "passengers": []}),
                           ("calculate", {"expression": "2 + 2"}), ("calculate", {"expression": "import os"}),
                           ("calculate", {"expression": "(250 + 30) * 2 / 3"})]:
            try:
                out.append(str(await kit.invoke(name, args)))
            except Exception as e:  # noqa: BLE001 - the message is what the test reads
                out.append(f"error: {e}")
        return out

    assert asyncio.run(go()) == ["error: User nobody not found", "error: Number of passengers does not match",
                                 "4.0", "error: Invalid characters in expression", "186.67"]


def test_lazy_db_dumps_and_hashes_as_the_pydantic_db() -> None:
    """A LazyDB's dump and hash equal those of the same database held as one pydantic model, after reads, writes,
    additions and deletions; and environments over one base never see each other's changes."""
    from keye_agent.tau.domains.airline import AirlineDB
    from keye_agent.tau.domains.airline.models import Passenger
    from keye_agent.tau.domains.tau2 import _cached_json

    raw = _cached_json(BUNDLED / "data" / "tau2" / "domains" / "airline" / "db.json.gz")
    base = LazyBase(AirlineDB, raw)
    a, b = LazyDB(base), LazyDB(base)
    ref = AirlineDB.model_validate(raw)
    assert a.hash() == json_hash(ref.model_dump())
    rid = next(iter(a.reservations))
    a.reservations[rid].passengers.append(Passenger(first_name="A", last_name="B", dob="2000-01-01"))
    ref.reservations[rid].passengers.append(Passenger(first_name="A", last_name="B", dob="2000-01-01"))
    a.reservations["NEW001"] = ref.reservations["NEW001"] = ref.reservations[rid].model_copy(
        update={"reservation_id": "NEW001"})
    uid = next(iter(a.users))
    del a.users[uid]
    del ref.users[uid]
    _ = a.flights[next(iter(a.flights))]  # read only
    assert a.dump() == ref.model_dump() and a.hash() == json_hash(ref.model_dump())
    assert len(a.users) == len(ref.users) and uid not in a.users and "NEW001" in a.reservations
    assert b.hash() == LazyDB(base).hash() != a.hash()  # the other view is untouched
    merged = a.merged({"users": {next(iter(a.users)): {"email": "x@y.z"}}})
    assert merged.users[next(iter(a.users))].email == "x@y.z" and a.users[next(iter(a.users))].email != "x@y.z"


def test_cli_runs_airline_with_the_oracle(tmp_path) -> None:
    from typer.testing import CliRunner

    from keye_agent.cli.tau import app

    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["run", "--domain", "airline", "--agent-model", "oracle", "--user-model", "oracle",
                                 "--num-tasks", "3", "--save-to", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["num_simulations"] == 3 and summary["avg_reward"] == 1.0
    data = json.loads(out.read_text())
    assert data["info"]["environment_info"]["domain_name"] == "airline"
    assert data["info"]["agent_info"]["implementation"] == "oracle_agent"


def test_readme_tau2_example_runs_as_written(tmp_path) -> None:
    """The README's "TAU2-bench domains" Python block, executed as written in a fresh interpreter."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if 'load_domain("airline")' in b)
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "{1: 1.0, 2: 1.0}"
