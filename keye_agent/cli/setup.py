"""Turning CLI options into a tool registry and an agent; shared by `run`, `chat`, `demo` and `tools list`."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keye_agent.errors import ConfigError
from keye_agent.tools import Tool, ToolRegistry, load_builtin
from keye_agent.types import GenerationSettings, ModelBackend


@dataclass
class ToolOptions:
    """What the user asked for on the command line: tool files, the sandbox, a search backend."""

    files: list[Path] = field(default_factory=list)
    sandbox: bool = False
    search: str | None = None


@dataclass
class ModelOptions:
    spec: str = "demo"
    base_url: str | None = None
    random_weights: bool = False
    constrained: bool | None = None
    """None keeps the backend's default; only local backends take it."""


def load_python_tools(path: Path) -> list[Tool]:
    """The tools a Python file defines: a ``TOOLS`` list if it has one, else every module-level :class:`Tool`
    (functions decorated with ``@tool`` are Tools)."""
    name = f"keye_agent_user_tools_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (ImportError, SyntaxError) as e:
        raise ConfigError(f"cannot import tools from {path}: {type(e).__name__}: {e}") from e
    items = getattr(module, "TOOLS", None)
    if items is None:
        items = [v for v in vars(module).values() if isinstance(v, Tool)]
    tools = [t if isinstance(t, Tool) else _as_tool(t, path) for t in items]
    if not tools:
        raise ConfigError(f"{path} defines no tools", hint="decorate functions with @keye_agent.tool, or set TOOLS = [...]")
    return tools


def _as_tool(item: Any, path: Path) -> Tool:
    from keye_agent.tools import tool

    if callable(item):
        return tool(item)
    raise ConfigError(f"{path}: TOOLS holds {type(item).__name__}, not a tool or function")


def _load_yaml(paths: list[Path], registry: ToolRegistry) -> None:
    try:
        from keye_agent.tools.yaml_registry import load_registry
    except ImportError as e:
        raise ConfigError(f"YAML tool registries are not available in this installation ({e})") from None
    load_registry(paths, into=registry)


def build_registry(opts: ToolOptions, extra: list[Tool] | None = None) -> ToolRegistry:
    """The tools of a session: ``extra``, then Python and YAML files in order, then run_code and search."""
    registry = ToolRegistry(extra or [])
    yaml_files: list[Path] = []
    for p in opts.files:
        if not p.is_file():
            raise ConfigError(f"tool file not found: {p}")
        if p.suffix == ".py":
            for t in load_python_tools(p):
                registry.register(t)
        elif p.suffix in (".yaml", ".yml"):
            yaml_files.append(p)
        else:
            raise ConfigError(f"{p}: unknown tool file type {p.suffix!r}", hint="use a .yaml/.yml registry or a .py file")
    if yaml_files:
        _load_yaml(yaml_files, registry)
    if opts.sandbox:
        registry.register(load_builtin("run_code"))
    if opts.search:
        registry.register(load_builtin("web_search", backend=opts.search))
        kind, _, arg = opts.search.partition(":")
        registry.register(load_builtin("fetch_url", **({"corpus": arg} if kind == "local" and arg else {})))
    return registry


def close_tools(registry: ToolRegistry) -> None:
    """Close what tools hold open (the run_code sandbox session): no container outlives the command."""
    registry.close()


def build_model(opts: ModelOptions) -> ModelBackend:
    from .models import resolve_model

    kw: dict[str, Any] = {}
    if opts.constrained is not None:
        local = opts.spec == "demo" or opts.spec.startswith("keye:") or opts.spec.endswith(".gguf") \
            or Path(opts.spec).is_dir()
        if not local:
            raise ConfigError("--constrained/--unconstrained applies to local models only",
                              hint="OpenAI-compatible servers constrain tool calls themselves (if they can)")
        kw["constrained"] = opts.constrained
    return resolve_model(opts.spec, base_url=opts.base_url, random_weights=opts.random_weights, **kw)


def generation_settings(max_tokens: int, temperature: float, tool_choice: str, seed: int | None) -> GenerationSettings:
    return GenerationSettings(max_tokens=max_tokens, temperature=temperature, tool_choice=tool_choice, seed=seed)


class Abandoned:
    """Set when a run was cancelled: a sync tool cancelled mid-call keeps running in its worker thread (Python
    cannot stop a thread), and the interpreter would wait for it at exit; `main` then exits without waiting."""

    work = False


def note_cancelled(result: Any) -> None:
    if result is not None and result.status == "cancelled":
        Abandoned.work = True
