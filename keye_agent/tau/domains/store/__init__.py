"""The store domain: ordering groceries for delivery through the store API's YAML tools, one in-process API
instance per environment. Its policy, tools and tasks ship with the package."""

from __future__ import annotations

from importlib import resources

from keye_agent.tau.domain import Domain
from keye_agent.tau.environment import Environment
from keye_agent.tau.schema import parse_tasks

from .toolkit import StoreToolkit

__all__ = ["StoreToolkit", "load_store"]


def _text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def load_store(task_set: str | None = None) -> Domain:
    """The store domain with its shipped tasks (task sets other than the default are not defined for it)."""
    import json

    from keye_agent.errors import ConfigError

    if task_set:
        raise ConfigError(f"the store domain has no task set {task_set!r}", hint="leave --task-set out")
    policy = _text("policy.md")

    async def make() -> Environment:
        return Environment("store", policy, StoreToolkit())

    tasks = parse_tasks(json.loads(_text("tasks.json")), source="keye_agent/tau/domains/store/tasks.json")
    splits = json.loads(_text("split_tasks.json"))
    return Domain("store", policy, make, tasks, splits, source="keye_agent.tau.domains.store")
