"""Domain folders without Python: tools declared in tools.yaml as steps over db.json (keye_agent.tau.db_tools).

The README's "Write a domain" folder (examples/tau_library, shown whole in the README) runs through the real CLI,
orchestrator, agent loop and evaluator; each step kind, the python: body and the errors a bad folder gets (file, line, fix) are
checked on small folders of their own."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from pathlib import Path

import pytest

from keye_agent.errors import ConfigError
from keye_agent.tau import IdleAgent, OracleUser, RunSettings, load_domain, run_tasks

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "tau_library"


def test_readme_shows_the_example_folder_as_it_is() -> None:
    section = README.read_text().split("## Write a domain", 1)[1].split("\n## ", 1)[0]
    files = dict(re.findall(r"`examples/tau_library/([\w.]+)`:\n\n```\w+\n(.*?)```", section, re.S))
    assert files == {p.name: p.read_text() for p in EXAMPLE.iterdir() if p.is_file()}
    assert "--domain examples/tau_library --agent-model oracle --user-model oracle" in section


def test_the_example_domain_runs_from_the_cli(tmp_path) -> None:
    """The README's command on examples/tau_library: the oracle meets every task; the results file is tau2's."""
    from typer.testing import CliRunner

    from keye_agent.cli.tau import app

    from .test_tau2_format import check_tau2_format

    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["run", "--domain", str(EXAMPLE), "--agent-model", "oracle", "--user-model",
                                 "oracle", "--save-to", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["num_simulations"] == 2 and summary["avg_reward"] == 1.0
    d = load_domain(str(EXAMPLE))
    check_tau2_format(out, d)
    sims = {s["task_id"]: s for s in json.loads(out.read_text())["simulations"]}
    tool_msgs = [m["content"] for m in sims["return_emma_late"]["messages"] if m["role"] == "tool"]
    assert tool_msgs == ["m2", '{"days_late": "7", "fee": "3.5"}', "b2 returned"]  # tau2's output text
    # an agent that does nothing leaves the database as it was: every DB check fails
    res = asyncio.run(run_tasks(d, d.tasks, lambda t, k: IdleAgent(t), lambda t, k: OracleUser(t), RunSettings()))
    assert [s.reward for s in res.simulations] == [0.0, 0.0]


def test_the_example_tools_refuse_with_their_errors() -> None:
    d = load_domain(str(EXAMPLE))
    out, db = asyncio.run(_calls(d, [
        ("borrow_book", {"member_id": "m1", "book_id": "b2"}), ("borrow_book", {"member_id": "m9", "book_id": "b1"}),
        ("borrow_book", {"member_id": "m1", "book_id": "b3"}), ("late_fee", {"member_id": "m1", "book_id": "b3"}),
        ("return_book", {"member_id": "m1", "book_id": "b1"}), ("find_member", {"email": "x@y.z"})]))
    assert out == ["error: Book b2 is not available", "error: Member m9 not found", "m1 borrowed Dune Messiah",
                   "{'days_late': 0, 'fee': 0.0}", "error: Member m1 has no loan of book b1",
                   "error: No member with email x@y.z"]
    assert db["members"]["m1"]["loans"] == {"b3": {"title": "Dune Messiah", "due": "2026-12-22"}}
    assert db["books"]["b3"]["available"] is False


def _folder(tmp_path: Path, tools_yaml: str, db: dict | None = None, extra: dict[str, str] | None = None) -> Path:
    d = tmp_path / "dom"
    d.mkdir(exist_ok=True)
    (d / "policy.md").write_text("Be careful.")
    (d / "db.json").write_text(json.dumps(db if db is not None else {"items": {}}))
    (d / "tasks.json").write_text(json.dumps([{"id": "t1", "user_scenario": {"instructions": "hi"}}]))
    (d / "tools.yaml").write_text(textwrap.dedent(tools_yaml))
    for name, text in (extra or {}).items():
        (d / name).write_text(textwrap.dedent(text))
    return d


async def _calls(domain, calls: list[tuple[str, dict]]) -> tuple[list[str], dict]:
    env = await domain.make_environment()
    out = []
    for name, args in calls:
        try:
            out.append(str(await env.tools.invoke(name, args)))
        except Exception as e:  # noqa: BLE001 - the message is what the test reads
            out.append(f"error: {e}")
    return out, env.tools.dump_db()


def test_every_step_kind(tmp_path) -> None:
    d = _folder(tmp_path, """\
        tools:
          - name: add_item
            kind: write
            description: Add an item.
            arguments:
              title: {type: string, description: Its title, required: true}
              qty: {type: integer, description: How many, default: 1}
            steps:
              - next_id: items
                prefix: item_
                as: id
              - set: items/{id}
                value: {title: "{title}", qty: "{qty}", tags: []}
            returns: "{id}"
          - name: restock
            kind: write
            description: Add to an item's quantity.
            arguments:
              item_id: {type: string, description: The item, required: true}
              by: {type: number, description: How many, required: true}
            steps:
              - require: items/{item_id}
                error: No item {item_id}
              - add: items/{item_id}/qty
                value: "{by}"
          - name: tag
            kind: write
            description: Tag an item unless it is sold out.
            arguments:
              item_id: {type: string, description: The item, required: true}
              tag: {type: string, description: The tag, required: true}
            steps:
              - check: items/{item_id}/qty
                in: [1, 2, 3, 4, 5, 6, 7, 8, 9]
                error: Item {item_id} is sold out or unknown
              - append: items/{item_id}/tags
                value: "{tag}"
          - name: find_by_title
            description: Find items by title.
            arguments:
              title: {type: string, description: Title, required: true}
            steps:
              - list: items
                where: {title: "{title}"}
          - name: rename
            kind: write
            description: Change an item's title.
            arguments:
              item_id: {type: string, description: The item, required: true}
              title: {type: string, description: The new title, required: true}
            steps:
              - update: items/{item_id}
                value: {title: "{title}"}
                error: No item {item_id}
          - name: remove
            kind: write
            description: Remove an item.
            arguments:
              item_id: {type: string, description: The item, required: true}
            steps:
              - delete: items/{item_id}
                error: No item {item_id}
              - get: items
        """)
    dom = load_domain(str(d))
    out, db = asyncio.run(_calls(dom, [
        ("add_item", {"title": "pen"}), ("add_item", {"title": "ink", "qty": 0}), ("restock", {"item_id": "item_1",
                                                                                             "by": 2}),
        ("restock", {"item_id": "nope", "by": 1}), ("tag", {"item_id": "item_1", "tag": "blue"}),
        ("tag", {"item_id": "item_2", "tag": "x"}), ("find_by_title", {"title": "pen"}),
        ("remove", {"item_id": "item_2"}), ("remove", {"item_id": "item_2"}), ("rename", {"item_id": "item_2",
                                                                                        "title": "x"}),
        ("rename", {"item_id": "item_1", "title": "quill"})]))
    assert out == ["item_1", "item_2", "3", "error: No item nope", "blue", "error: Item item_2 is sold out or unknown",
                   "[{'title': 'pen', 'qty': 3, 'tags': ['blue']}]",
                   "{'item_1': {'title': 'pen', 'qty': 3, 'tags': ['blue']}}", "error: No item item_2",
                   "error: No item item_2", "{'title': 'quill', 'qty': 3, 'tags': ['blue']}"]
    assert db == {"items": {"item_1": {"title": "quill", "qty": 3, "tags": ["blue"]}}}
    # each environment starts from db.json again
    assert asyncio.run(_calls(dom, []))[1] == {"items": {}}


def test_python_body_and_hidden_tools(tmp_path) -> None:
    d = _folder(tmp_path, """\
        tools:
          - name: double
            kind: write
            description: Double a counter.
            arguments:
              name: {type: string, description: The counter, required: true}
            python: rules.py:double
          - name: assert_value
            description: Check a counter (for env assertions).
            offered: false
            arguments:
              name: {type: string, description: The counter, required: true}
              value: {type: integer, description: Expected value, required: true}
            python: rules.py:has_value
        """, db={"counters": {"a": 2}}, extra={"rules.py": """\
        def double(db, name):
            if name not in db["counters"]:
                raise ValueError(f"Counter {name} not found")
            db["counters"][name] *= 2
            return db["counters"][name]

        def has_value(db, name, value):
            return db["counters"][name] == value
        """})
    dom = load_domain(str(d))

    async def go():
        env = await dom.make_environment()
        assert env.tools.tool_names() == ["double"] and env.tools.registry().names == ["double"]
        return [str(await env.tools.invoke("double", {"name": "a"})), env.tools.function("assert_value")(
            name="a", value=4)]

    assert asyncio.run(go()) == ["4", True]


@pytest.mark.parametrize(("yaml_text", "line", "message", "hint"), [
    ("tools:\n  - name: t\n    description: d\n    steps:\n      - fetch: a/b\n", 5, "exactly one operation",
     "operations: get"),
    ("tools:\n  - name: t\n    steps:\n      - get: a\n", 2, "has no description", "add `description:"),
    ("tools:\n  - name: t\n    description: d\n    steps:\n      - get: items/{item}\n", 5,
     "{item} is neither an argument", "known here: none"),
    ("tools:\n  - name: t\n    description: d\n    arguments:\n      x: {type: string}\n    steps:\n"
     "      - get: a\n", 5, "needs a type and a description", "x: {type: string, description"),
    ("tools:\n  - name: t\n    description: d\n    python: rules.py:missing\n", 4, "not a file of the domain",
     "put rules.py beside tools.yaml"),
    ("tools:\n  - name: t\n    description: d\n    kind: delete\n    steps:\n      - get: a\n", 4,
     "is not read, write or generic", "write: the tool changes"),
    ("tools:\n  - name: t\n    description: d\n    steps:\n      - set: a/b\n", 5, "needs value:", "value: ..."),
    ("tools: [\n", 2, "YAML syntax error", "indentation"),
    ("tools:\n  - name: t\n    description: d\n    steps:\n      - update: a\n        value: 3\n", 6,
     "value: is a mapping", "e.g. value: {status"),
])
def test_bad_folder_names_file_line_and_fix(tmp_path, yaml_text, line, message, hint) -> None:
    d = _folder(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as e:
        load_domain(str(d))
    assert e.value.file == str(d / "tools.yaml") and e.value.line == line, str(e.value)
    assert message in str(e.value) and hint in (e.value.hint or ""), (str(e.value), e.value.hint)


def test_a_folder_without_tools_says_how_to_add_them(tmp_path) -> None:
    d = _folder(tmp_path, "tools: []\n")
    (d / "tools.yaml").unlink()
    with pytest.raises(ConfigError, match="has no tools") as e:
        load_domain(str(d))
    assert "tools.yaml beside db.json" in (e.value.hint or "")
