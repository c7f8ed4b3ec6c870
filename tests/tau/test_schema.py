"""Task files are validated with errors that name the file, the task and the field; domains and task sets are
found or refused with a hint."""

from __future__ import annotations

import json

import pytest

from keye_agent.errors import ConfigError
from keye_agent.tau import Action, TauToolCall, load_domain, load_tasks, parse_tasks
from keye_agent.tau.domains.tau2 import BUNDLED
from keye_agent.tau.schema import RewardType


def _task(**kw):
    return {"id": "t1", "user_scenario": {"instructions": "Mark task_1 completed."}, **kw}


def test_default_reward_basis_is_db_and_communicate() -> None:
    (t,) = parse_tasks([_task(evaluation_criteria={"actions": []})])
    assert t.reward_basis == [RewardType.DB, RewardType.COMMUNICATE]


def test_bad_task_names_task_and_field(tmp_path) -> None:
    bad = [_task(), {"id": "t2", "user_scenario": {"persona": "x"}}]
    with pytest.raises(ConfigError) as e:
        parse_tasks(bad, source="tasks.json")
    msg = str(e.value)
    assert "tasks.json" in msg and "task #1 ('t2')" in msg and "user_scenario.instructions" in msg


def test_bad_reward_basis_and_duplicate_ids() -> None:
    with pytest.raises(ConfigError, match=r"evaluation_criteria\.reward_basis\[0\]"):
        parse_tasks([_task(evaluation_criteria={"reward_basis": ["DATABASE"]})])
    with pytest.raises(ConfigError, match="repeats task #0"):
        parse_tasks([_task(), _task()])
    with pytest.raises(ConfigError, match="JSON list"):
        parse_tasks({"id": "t1"})


def test_invalid_json_has_line_and_column(tmp_path) -> None:
    p = tmp_path / "tasks.json"
    p.write_text('[\n  {"id": "t1",\n   "user_scenario": }\n]')
    with pytest.raises(ConfigError) as e:
        load_tasks(p)
    assert e.value.file == str(p) and e.value.line == 3


def test_action_matching_on_compare_args() -> None:
    a = Action(action_id="a", name="update_task_status", arguments={"task_id": "task_1", "status": "completed"})
    assert a.matches(TauToolCall(name="update_task_status", arguments={"task_id": "task_1", "status": "completed"}))
    assert not a.matches(TauToolCall(name="update_task_status", arguments={"task_id": "task_1", "status": "pending"}))
    only_id = a.model_copy(update={"compare_args": ["task_id"]})
    assert only_id.matches(TauToolCall(name="update_task_status", arguments={"task_id": "task_1", "status": "x"}))
    any_args = a.model_copy(update={"compare_args": []})
    assert any_args.matches(TauToolCall(name="update_task_status", arguments={}))
    assert not any_args.matches(TauToolCall(name="create_task", arguments={}))


def test_domains_and_task_sets(tau2_data, monkeypatch, tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown domain"):
        load_domain("no-such-domain")
    with pytest.raises(ConfigError, match="task set 'v9'"):
        load_domain("mock", tau2_data=tau2_data, task_set="v9")
    monkeypatch.delenv("KEYE_TAU2_DATA", raising=False)
    assert load_domain("mock", tau2_data=None).source.startswith(str(BUNDLED))  # the copy shipped with the package
    with pytest.raises(ConfigError, match="no mock domain under"):
        load_domain("mock", tau2_data=tmp_path)
    d = load_domain("mock", tau2_data=tau2_data)
    assert [t.id for t in d.select(num_tasks=2)] == [t.id for t in d.tasks[:2]]
    assert [t.id for t in d.select(task_ids=["impossible_task_1"])] == ["impossible_task_1"]
    with pytest.raises(ConfigError, match="no tasks"):
        d.select(task_ids=["nope"])
    with pytest.raises(ConfigError, match="no split 'test'"):
        d.select(split="test")


def test_domain_folder_with_python_toolkit(tmp_path) -> None:
    """A user's own domain folder: policy, db, tasks and a Toolkit subclass in tools.py."""
    (tmp_path / "policy.md").write_text("Counters only go up.")
    (tmp_path / "db.json").write_text(json.dumps({"counters": {"a": 0}}))
    (tmp_path / "tasks.json").write_text(json.dumps([{
        "id": "bump", "user_scenario": {"instructions": "Increment counter a."},
        "evaluation_criteria": {"actions": [{"action_id": "x", "name": "increment", "arguments": {"name": "a"}}]}}]))
    (tmp_path / "tools.py").write_text(
        "from keye_agent.tau import Toolkit, env_tool\n\n"
        "class Tools(Toolkit):\n"
        "    @env_tool('write')\n"
        "    def increment(self, name: str) -> int:\n"
        "        '''Add one to a counter.\n\n        Args:\n            name: The counter.\n        '''\n"
        "        self.db['counters'][name] += 1\n"
        "        return self.db['counters'][name]\n")
    import asyncio

    from keye_agent.tau import OracleAgent, OracleUser, RunSettings, run_tasks

    d = load_domain(str(tmp_path))
    res = asyncio.run(run_tasks(d, d.tasks, lambda t, k: OracleAgent(t), lambda t, k: OracleUser(t), RunSettings()))
    assert res.simulations[0].reward == 1.0
    (tmp_path / "tools.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="tools.py: cannot import: RuntimeError: boom"):
        load_domain(str(tmp_path))


APP_PY = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app():
    counters = {"a": 0}

    async def bump(request):
        name = request.path_params["name"]
        if name not in counters:
            return JSONResponse({"error": "unknown_counter", "detail": f"No counter {name}."}, 404)
        counters[name] += 1
        return JSONResponse({"name": name, "value": counters[name]})

    app = Starlette(routes=[Route("/counters/{name}/bump", bump, methods=["POST"])])
    app.state.counters = counters
    return app


def dump_state(app):
    return dict(app.state.counters)
'''

TOOLS_YAML = '''
version: 1
defaults:
  base_url: http://counters.sim
tools:
  - name: bump
    kind: http
    description: Add one to a counter.
    method: POST
    path: /counters/{name}/bump
    mutates_state: true
    arguments:
      name: {type: string, description: The counter, in: path}
'''


def test_domain_folder_with_yaml_tools_over_an_asgi_app(tmp_path) -> None:
    """A user's domain whose tools are a YAML registry over their own in-process ASGI app: one app per
    environment, its state compared through dump_state; a failed call (unknown counter) is recovered from."""
    import asyncio

    from keye_agent.tau import IdleAgent, OracleAgent, OracleUser, RunSettings, run_tasks

    (tmp_path / "policy.md").write_text("Counters only go up.")
    (tmp_path / "app.py").write_text(APP_PY)
    (tmp_path / "tools.yaml").write_text(TOOLS_YAML)
    actions = [{"action_id": "x0", "name": "bump", "arguments": {"name": "b"}},
               {"action_id": "x1", "name": "bump", "arguments": {"name": "a"}}]
    (tmp_path / "tasks.json").write_text(json.dumps([{
        "id": "bump_a", "user_scenario": {"instructions": "Increment counter a."},
        "evaluation_criteria": {"actions": actions}}]))
    d = load_domain(str(tmp_path))
    res = asyncio.run(run_tasks(d, d.tasks, lambda t, k: OracleAgent(t), lambda t, k: OracleUser(t),
                                RunSettings(num_trials=4, max_concurrency=4)))
    assert [s.reward for s in res.simulations] == [1.0] * 4
    errors = [m.content for m in res.simulations[0].messages if m.role == "tool" and m.error]
    assert len(errors) == 1 and "404" in errors[0] and "unknown_counter" in errors[0]
    ok = [m.content for m in res.simulations[0].messages if m.role == "tool" and not m.error]
    assert json.loads(ok[0]) == {"name": "a", "value": 1}  # each simulation has its own app
    res = asyncio.run(run_tasks(d, d.tasks, lambda t, k: IdleAgent(t), lambda t, k: OracleUser(t), RunSettings()))
    assert res.simulations[0].reward == 0.0


def test_every_tau2_task_file_loads_and_round_trips(tau2_data) -> None:
    """All of tau2-bench's task files (airline, retail, mock; current and v0.1.0) validate, and dumping a task
    and loading it back gives the same task (results files embed tasks this way)."""
    files = sorted(tau2_data.glob("**/domains/*/tasks.json*"))
    assert len(files) >= 6
    for f in files:
        tasks = load_tasks(f)
        assert tasks, f
        again = parse_tasks([t.model_dump(mode="json", exclude_unset=True) for t in tasks])
        assert again == tasks, f
