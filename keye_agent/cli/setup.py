"""Turning CLI options into a tool registry and a model; shared by `run`, `chat`, `demo` and `tools list`.

Everything is checked before anything slow starts: the model spec is parsed (not loaded) by
:func:`model_options`, the tool files and ``--tool-choice`` by :func:`build_registry` and :func:`check_tool_choice`,
the Docker engine by :func:`prepare_sandbox`; only then does :func:`build_model` load the model.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from keye_agent.backends.specs import ModelSpec, load_model, parse_model_spec
from keye_agent.errors import ConfigError
from keye_agent.tools import Tool, ToolRegistry, load_builtin
from keye_agent.types import GenerationSettings, ModelBackend

from .progress import spinner

TOOL_CHOICES = ("auto", "required", "none")


@dataclass
class ToolOptions:
    """What the user asked for on the command line: tool files, the sandbox, a search backend."""

    files: list[Path] = field(default_factory=list)
    sandbox: bool = False
    search: str | None = None
    mcp: list[str] = field(default_factory=list)
    """MCP servers (``--mcp``): a streamable-HTTP URL or a command line each."""


@dataclass
class ModelOptions:
    """A model as the command line named it; ``spec`` is parsed once (:func:`model_options`), never again."""

    spec: ModelSpec
    base_url: str | None = None
    random_weights: bool = False
    constrained: bool | None = None
    """None keeps the backend's default; only local backends take it."""


def model_options(spec: str, base_url: str | None = None, random_weights: bool = False,
                  constrained: bool | None = None) -> ModelOptions:
    """Parse and check a model's options without loading anything: a typo or a missing path fails at once."""
    parsed = parse_model_spec(spec, random_weights=random_weights)
    if constrained is not None and not parsed.local:
        raise ConfigError("--constrained/--unconstrained applies to local models only",
                          hint="OpenAI-compatible servers constrain tool calls themselves (if they can)")
    return ModelOptions(parsed, base_url, random_weights, constrained)


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
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything at import; name the file
        sys.modules.pop(name, None)
        raise ConfigError(f"cannot import tools from {path}: {type(e).__name__}: {e}",
                          hint="fix the file (rerun with --debug for the traceback)") from e
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
    """The tools of a session: ``extra``, then Python and YAML files in order, then run_code, search and MCP
    servers. On a failure, what was opened (an MCP server) is closed again."""
    registry = ToolRegistry(extra or [])
    try:
        _fill_registry(opts, registry)
    except BaseException:
        for t in registry:
            if t not in (extra or []):
                t.close()
        raise
    return registry


def _fill_registry(opts: ToolOptions, registry: ToolRegistry) -> None:
    yaml_files: list[Path] = []
    for p in opts.files:
        if not p.is_file():
            raise ConfigError(f"tool file not found: {p}",
                              hint="give a .yaml/.yml registry or a .py file of @tool functions (paths are "
                                   "relative to the current directory)")
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
    for spec in opts.mcp:
        from keye_agent.tools.mcp_client import add_mcp_server

        add_mcp_server(registry, spec)


def close_tools(registry: ToolRegistry) -> None:
    """Close what tools hold open (the run_code sandbox session): no container outlives the command."""
    registry.close()


def check_tool_choice(tool_choice: str, registry: ToolRegistry, option: str = "--tool-choice") -> None:
    """``--tool-choice`` is auto, required, none, or the name of a tool of the session."""
    if tool_choice in TOOL_CHOICES:
        if tool_choice == "required" and not len(registry):
            raise ConfigError(f"{option} required needs tools", hint="add --tools FILE, --sandbox or --search")
        return
    names = [t.name for t in registry]
    if tool_choice not in names:
        known = ", ".join([*TOOL_CHOICES, *names])
        raise ConfigError(f"{option} {tool_choice!r} is neither auto, required, none nor a tool of this session",
                          hint=f"choose one of: {known}")


def prepare_sandbox(console: Console) -> None:
    """For ``--sandbox``: reach the Docker engine now (its absence fails at once, with the fix) and build the
    sandbox image if it is missing, with a spinner on ``console``."""
    from keye_agent.sandboxes import SandboxConfig, build_image, default_image
    from keye_agent.sandboxes._docker import docker_client, image_exists

    with spinner(console, "connecting to the Docker engine"):
        docker_client()
    image = SandboxConfig().image or default_image()
    if image_exists(image):
        return
    with spinner(console, f"building the sandbox image {image} (once; a few minutes)") as wait:
        build_image(log=wait.log)
    console.print(f"[dim]built the sandbox image {image}[/]")


def build_model(opts: ModelOptions, console: Console | None = None) -> ModelBackend:
    """Load the model, with a spinner on ``console`` (stderr) while it loads."""
    def load() -> ModelBackend:
        return load_model(opts.spec, base_url=opts.base_url, random_weights=opts.random_weights,
                          constrained=opts.constrained)

    if console is None or opts.spec.kind == "scripted":
        return load()
    with spinner(console, f"loading the model {opts.spec.text}" + (" (fetched once on first use)"
                                                                   if opts.spec.kind == "demo" else "")):
        return load()


def generation_settings(max_tokens: int, temperature: float, tool_choice: str, seed: int | None) -> GenerationSettings:
    return GenerationSettings(max_tokens=max_tokens, temperature=temperature, tool_choice=tool_choice, seed=seed)
