"""Domains: where their files are, and how a fresh environment and the task list are made.

A domain folder holds::

    policy.md          the rules the agent must follow
    db.json            the agent side's database
    tasks.json         tasks in tau2-bench's schema
    split_tasks.json   optional: {"base": [task ids], ...}
    and its tools, either
    tools.py + db.json a Toolkit subclass named ``Tools`` (optionally ``UserTools`` over user_db.json)
    tools.yaml+db.json tools declared in YAML as steps over the database (no Python needed, see db_tools.py)
    tools.yaml+app.py  a YAML tool registry over an in-process ASGI app (``create_app()``, ``dump_state(app)``,
                       optionally ``load_state(app, data)``), one app per environment

``mock``, ``airline`` and ``retail`` are tau2-bench's domains with our tools (:mod:`.domains.tau2`); their files
ship with the package, or are read from a tau2-bench data folder (``--tau2-data``). ``store`` is ours. Any other name is taken as a path to a domain folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keye_agent.errors import ConfigError

from .environment import Environment
from .schema import Task, load_splits, load_tasks, read_data_text
from .toolkit import Toolkit

TAU2_DATA_ENV = "KEYE_TAU2_DATA"

EnvFactory = Callable[[], Awaitable[Environment]]


@dataclass
class Domain:
    """A domain ready to run: its policy, a factory of fresh environments, its tasks and splits."""

    name: str
    policy: str
    make_environment: EnvFactory
    tasks: list[Task]
    splits: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    user_guidelines: dict[str, str] = field(default_factory=dict)
    """Simulation guidelines for the user model, "plain" and "tools" (when it has tools); ours when empty."""
    tool_kinds: dict[str, str] | None = None
    """Each tool's kind (read, write, generic), filled on first use by the evaluator."""

    def select(self, *, split: str | None = "base", task_ids: list[str] | None = None,
               num_tasks: int | None = None) -> list[Task]:
        """The tasks to run: the split (when the task set has splits), then the ids asked for, then the first N."""
        tasks = self.tasks
        if split and self.splits:
            if split not in self.splits:
                raise ConfigError(f"domain {self.name!r} has no split {split!r}",
                                  hint=f"splits: {', '.join(sorted(self.splits))}")
            wanted = set(self.splits[split])
            tasks = [t for t in tasks if t.id in wanted]
        if task_ids:
            by_id = {t.id: t for t in self.tasks}
            missing = [i for i in task_ids if i not in by_id]
            if missing:
                raise ConfigError(f"domain {self.name!r} has no tasks {missing}",
                                  hint=f"first ids: {', '.join(list(by_id)[:8])}")
            tasks = [by_id[i] for i in task_ids]
        if num_tasks is not None:
            if num_tasks < 1:
                raise ConfigError(f"--num-tasks must be at least 1, got {num_tasks}")
            tasks = tasks[:num_tasks]
        return tasks

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise ConfigError(f"domain {self.name!r} has no task {task_id!r}")


def tau2_data_dir(explicit: str | Path | None = None) -> Path | None:
    """The tau2-bench data folder: the one given, else $KEYE_TAU2_DATA, else None."""
    value = explicit or os.environ.get(TAU2_DATA_ENV)
    return Path(value).expanduser() if value else None


def data_file(folder: Path, name: str) -> Path | None:
    """``folder/name``, or its gzip-compressed twin ``folder/name.gz``; None when neither exists."""
    for p in (folder / name, folder / f"{name}.gz"):
        if p.is_file():
            return p
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_data_text(path))
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=str(path)) from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"not valid JSON: {e.msg}", file=str(path), line=e.lineno, column=e.colno) from None


def _task_file(domain_dir: Path, name: str, task_set: str | None, data_root: Path | None) -> Path:
    """tasks.json of the domain, or of a named task set (e.g. ``v0.1.0``) kept beside the data folder."""
    if not task_set:
        return data_file(domain_dir, "tasks.json") or domain_dir / "tasks.json"
    roots = [r for r in (data_root, domain_dir.parent.parent.parent.parent) if r is not None]
    for root in roots:
        for rel in (f"{task_set}/data/tau2/domains/{name}", f"{task_set}/domains/{name}", f"{task_set}/{name}"):
            p = data_file(root / rel, "tasks.json")
            if p is not None:
                return p
    p = data_file(domain_dir, f"tasks_{task_set}.json")
    if p is not None:
        return p
    raise ConfigError(f"task set {task_set!r} of domain {name!r} not found",
                      hint=f"looked under {', '.join(str(r) for r in roots)} for {task_set}/data/tau2/domains/{name}/"
                           "tasks.json; pass --tau2-data pointing at the folder that holds it")


def _tasks_and_splits(domain_dir: Path, name: str, task_set: str | None,
                      data_root: Path | None) -> tuple[list[Task], dict[str, list[str]]]:
    tfile = _task_file(domain_dir, name, task_set, data_root)
    tasks = load_tasks(tfile)
    stem = tfile.name.removesuffix(".gz").removesuffix(".json")
    split_file = tfile.parent / f"split_{stem}.json"
    splits = load_splits(split_file) if split_file.is_file() else {}
    return tasks, splits


def _import_file(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any failure to import user code is reported with the file named
        raise ConfigError(f"cannot import: {type(e).__name__}: {e}", file=str(path)) from e
    return module


def load_folder(path: str | Path, *, task_set: str | None = None) -> Domain:
    """A domain folder: a Python toolkit over db.json (tools.py defining ``Tools``, optionally ``UserTools``), a
    YAML tool registry over an in-process ASGI app (tools.yaml, and app.py defining ``create_app()``,
    ``dump_state(app)`` and optionally ``load_state(app, data)``), or YAML tools over db.json (tools.yaml without
    app.py: :mod:`.db_tools`)."""
    d = Path(path)
    for required in ("policy.md", "tasks.json"):
        if not (d / required).is_file():
            raise ConfigError(f"domain folder {d} has no {required}",
                              hint="a domain folder holds policy.md, tasks.json and tools.py + db.json "
                                   "(or tools.yaml + app.py)")
    policy = (d / "policy.md").read_text(encoding="utf-8")
    tasks, splits = _tasks_and_splits(d, d.name, task_set, None)
    if (d / "tools.py").is_file():
        make = _python_toolkit_env(d, policy)
    elif (d / "tools.yaml").is_file() and (d / "app.py").is_file():
        make = _asgi_env(d, policy)
    elif (d / "tools.yaml").is_file() and (d / "db.json").is_file():
        from .db_tools import db_tools_environment

        make = db_tools_environment(d, policy)
    else:
        raise ConfigError(f"domain folder {d} has no tools",
                          hint="add tools.yaml beside db.json (tools declared as steps over the database; see "
                               "README \"Write a domain\"), tools.py (a Toolkit named Tools), or tools.yaml with app.py")
    return Domain(d.name, policy, make, tasks, splits, source=str(d))


def _python_toolkit_env(d: Path, policy: str) -> EnvFactory:
    if not (d / "db.json").is_file():
        raise ConfigError(f"domain folder {d} has tools.py but no db.json")
    module = _import_file(d / "tools.py", f"keye_tau_domain_{d.name}")
    tools_cls = getattr(module, "Tools", None)
    user_cls = getattr(module, "UserTools", None)
    if not (isinstance(tools_cls, type) and issubclass(tools_cls, Toolkit)):
        raise ConfigError("tools.py must define `Tools`, a subclass of keye_agent.tau.Toolkit",
                          file=str(d / "tools.py"))
    db_data = _read_json(d / "db.json")
    user_data = _read_json(d / "user_db.json") if (d / "user_db.json").is_file() else None
    db_model = getattr(tools_cls, "db_model", None)
    user_model = getattr(user_cls, "db_model", None) if user_cls else None

    def build(model: Any, data: Any) -> Any:
        return model.model_validate(data) if model is not None else json.loads(json.dumps(data))

    async def make() -> Environment:
        user_kit = user_cls(build(user_model, user_data or {})) if user_cls else None
        return Environment(d.name, policy, tools_cls(build(db_model, db_data)), user_kit)

    return make


def _asgi_env(d: Path, policy: str) -> EnvFactory:
    from .asgi_toolkit import AsgiToolkit, shared_registry

    module = _import_file(d / "app.py", f"keye_tau_domain_app_{d.name}")
    for fn in ("create_app", "dump_state"):
        if not callable(getattr(module, fn, None)):
            raise ConfigError(f"app.py must define {fn}()", file=str(d / "app.py"),
                              hint="create_app() -> ASGI app; dump_state(app) -> the state to compare, as JSON data")
    shared_registry(d / "tools.yaml")  # load (and check) the registry now, not inside the first simulation

    async def make() -> Environment:
        kit = AsgiToolkit(d / "tools.yaml", module.create_app(), dump=module.dump_state,
                          load=getattr(module, "load_state", None))
        return Environment(d.name, policy, kit)

    return make


def load_domain(spec: str, *, tau2_data: str | Path | None = None, task_set: str | None = None) -> Domain:
    """``mock``, ``airline``, ``retail`` (tau2-bench's), ``store`` (ours), or a path to a domain folder."""
    from .domains.tau2 import TAU2_DOMAINS, load_tau2

    if spec in TAU2_DOMAINS:
        return load_tau2(spec, tau2_data, task_set=task_set)
    if spec == "store":
        try:
            from .domains.store import load_store
        except ModuleNotFoundError as e:
            raise ConfigError(f"the store domain needs {e.name!r}, which is not installed",
                              hint="pip install 'keye-agent[serve]' (the store API runs on starlette)") from None
        return load_store(task_set=task_set)
    p = Path(spec).expanduser()
    if p.is_dir():
        return load_folder(p, task_set=task_set)
    raise ConfigError(f"unknown domain {spec!r}",
                      hint="use mock, airline, retail, store, or the path of a domain folder (policy.md, db.json, "
                           "tasks.json, tools.py)")
