"""YAML tool registries: ``load_registry(paths) -> ToolRegistry``.

A registry file lists tools of five kinds (the format is the JSON Schema in ``registry_schema.json``)::

    version: 1
    network: {allow_loopback: true}          # HTTP tools reach public addresses only, unless allowed here
    defaults: {base_url: "${STORE_API_URL:-http://127.0.0.1:8765}", timeout_s: 10, retries: 2}
    include: [more_tools.yaml]
    tools:
      - name: get_store
        kind: http
        description: Details and opening hours of one store.
        method: GET
        path: /stores/{store_id}
        arguments:
          store_id: {type: string, description: "Store id, e.g. s1", in: path}
        response: {select: "$.store"}
      - {kind: python, function: "mypkg.tools:convert_units"}
      - {kind: builtin, builtin: web_search, options: {max_results: 5}}
      - {kind: openapi, spec: openapi.json, operations: [listStores, getStore]}
      - {kind: mcp, command: python, args: [my_mcp_server.py], tools: [search]}   # see yaml_mcp.py

Every mistake is a :class:`ConfigError` carrying file, line and column, what was expected there and, for a
misspelt key or name, the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from keye_agent.errors import ConfigError, KeyeAgentError, ToolDefinitionError, register_secret

from .base import Tool
from .builtins import load_builtin
from .decorator import tool as make_tool
from .http_tool import make_http_tool
from .netguard import NetPolicy
from .registry import ToolRegistry
from .registry_schema import registry_json_schema, schema_errors
from .yaml_http import auth_from_env, definition_error, http_spec, openapi_tools
from .yaml_source import SourceMap, expand_env, read_yaml

__all__ = ["load_registry", "registry_json_schema", "validate_registry_file"]

_OVERRIDES = ("description", "timeout_s", "retries", "mutates_state", "requires_approval")


class _Where:
    """``file:line`` of a tool's entry, looked up when a message needs it (a 50,000-tool file needs none)."""

    __slots__ = ("path", "smap")

    def __init__(self, smap: SourceMap, path: tuple[Any, ...]) -> None:
        self.smap, self.path = smap, path

    def __str__(self) -> str:
        return f"{self.smap.file}:{self.smap.at(self.path)[0]}"


@dataclass
class _Context:
    env: Mapping[str, str]
    transport: httpx.AsyncBaseTransport | None
    tools: dict[str, tuple[Tool, _Where]] = field(default_factory=dict)  # name -> (tool, where it is defined)
    loaded: set[Path] = field(default_factory=set)


def _secret_path(path: tuple[Any, ...]) -> bool:
    return "auth" in path or "headers" in path or (len(path) > 1 and path[-2] == "env")  # env: of an mcp server


def load_registry(
    path_or_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    into: ToolRegistry | None = None,
    **registry_options: Any,
) -> ToolRegistry:
    """Load one or more registry files into a :class:`ToolRegistry`.

    ``env`` replaces ``os.environ`` for ``${VAR}`` and auth lookups; ``transport`` sends every HTTP tool's requests
    through it (an ``httpx.ASGITransport`` for an in-process app; the network policy is then moot); ``into`` adds
    the tools to an existing registry; other keywords go to ``ToolRegistry`` (e.g. ``backoff_base_s=0.01``).

    Example::

        registry = load_registry("examples/store.yaml")
    """
    paths = [path_or_paths] if isinstance(path_or_paths, str | os.PathLike) else list(path_or_paths)
    if not paths:
        raise ConfigError("no registry file given")
    ctx = _Context(env=os.environ if env is None else env, transport=transport)
    try:
        for p in paths:
            _load_file(Path(p), ctx, stack=(), parent_defaults={}, parent_network=None)
        registry = into if into is not None else ToolRegistry(**registry_options)
        for name, (_, where) in ctx.tools.items():
            if name in registry:
                raise ConfigError(f"tool {name!r} (defined at {where}) is already in the registry",
                                  hint="rename one (an mcp entry: set prefix:)")
    except BaseException:
        _release(t for t, _ in ctx.tools.values())  # what this load started (an MCP server) stops with it
        raise
    for t, _ in ctx.tools.values():
        registry.register(t)
    return registry


def validate_registry_file(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem found in a registry file (and its includes) as ``file:line:column: message (hint: ...)``
    lines; an empty list when it loads cleanly. For ``keye-agent tools validate FILE``."""
    p = Path(path)
    try:
        _, _, errors = _prepare(p, os.environ if env is None else env)
    except ConfigError as e:
        return [str(e)]
    if errors:
        return [str(e) for e in errors]
    try:
        load_registry(p, env=env)
    except KeyeAgentError as e:
        return [str(e)]
    return []


def _secret_names(data: dict[str, Any]) -> list[str]:
    """Variables whose values are secrets wherever ``${}`` uses them: those listed under ``secrets:`` and those an
    ``auth:`` reads (``token_env``, ``key_env``), found before anything is expanded or checked, so no error
    (a schema problem in an earlier tool, a bad URL) can quote one."""
    names = data.get("secrets")
    found = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    auths = [data.get("defaults", {}).get("auth")] if isinstance(data.get("defaults"), dict) else []
    tools = data.get("tools")
    auths += [t.get("auth") for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    for auth in auths:
        if isinstance(auth, dict):
            found += [auth[k] for k in ("token_env", "key_env") if isinstance(auth.get(k), str)]
    return found


def _prepare(path: Path, env: Mapping[str, str]) -> tuple[dict[str, Any], SourceMap, list[ConfigError]]:
    """Read, expand ``${VAR}``s and check against the schema: (data, source map, schema problems)."""
    data, smap = read_yaml(path)
    if not isinstance(data, dict):
        raise smap.error(f"the top level is a {type(data).__name__}; expected a mapping with a 'tools' list", ())
    names = _secret_names(data)
    for secret in names:
        if env.get(secret):
            register_secret(env[secret])
    data = expand_env(data, smap, env=env, secret_names=frozenset(names), is_secret_path=_secret_path)
    return data, smap, schema_errors(data, smap)


def _load_file(path: Path, ctx: _Context, *, stack: tuple[Path, ...], parent_defaults: dict[str, Any],
               parent_network: dict[str, Any] | None) -> None:
    try:
        real = path.resolve()
    except (RuntimeError, OSError) as e:  # RuntimeError: a symlink loop, before Python 3.13
        raise ConfigError(f"cannot read registry file {path}: {e}",
                          hint="a symlink on this path points back at itself; point it at a file") from None
    if real in stack:
        chain = " -> ".join(str(s) for s in (*stack, real))
        raise ConfigError(f"include cycle: {chain}", hint="remove one of the include entries")
    if real in ctx.loaded:  # a file shared by two includes (a diamond) contributes its tools once
        return
    ctx.loaded.add(real)
    data, smap, errors = _prepare(path, ctx.env)
    if errors:
        first = errors[0]
        if len(errors) > 1:
            first.args = (f"{first.args[0]} (and {len(errors) - 1} more problem(s); run `keye-agent tools "
                          f"validate {path}`)",)
        raise first
    defaults = _merge_defaults(parent_defaults, data.get("defaults") or {})
    network = data.get("network", parent_network)
    for i, inc in enumerate(data.get("include") or []):
        inc_path = (path.parent / inc)
        if inc_path.is_symlink() and not inc_path.exists():
            raise smap.error(f"included file {inc!r} is a symlink that loops or points at nothing ({inc_path})",
                             ("include", i), hint="point the symlink at a registry file")
        if not inc_path.exists():
            raise smap.error(f"included file {inc!r} not found (looked for {inc_path})", ("include", i),
                             hint="include paths are relative to the including file")
        try:
            _load_file(inc_path, ctx, stack=(*stack, real), parent_defaults=defaults, parent_network=network)
        except ConfigError as e:
            if e.file is None:  # a cycle: point at this include line
                raise smap.error(str(e), ("include", i)) from None
            raise
    policy = _policy(network or {})
    for i, spec in enumerate(data.get("tools") or []):
        built = _build(spec, ("tools", i), smap, defaults, policy, path.parent, ctx)
        here = _Where(smap, ("tools", i))
        for t in built:
            if t.name in ctx.tools:
                _release(built)
                raise smap.error(f"duplicate tool name {t.name!r}; first defined at {ctx.tools[t.name][1]}",
                                 ("tools", i, "name") if "name" in spec else ("tools", i),
                                 hint="tool names must be unique across a registry and its includes; rename one")
            ctx.tools[t.name] = (t, here)


def _release(tools: Iterable[Tool]) -> None:
    for t in tools:
        if t.on_close is not None:  # a shared module-level Tool owns nothing and is left as it is
            t.close()


def _merge_defaults(parent: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = {**parent, **own}
    if "headers" in parent or "headers" in own:
        merged["headers"] = {**parent.get("headers", {}), **own.get("headers", {})}
    return merged


def _policy(network: dict[str, Any]) -> NetPolicy:
    return NetPolicy(
        allow_private=bool(network.get("allow_private", False)),
        allow_loopback=bool(network.get("allow_loopback", False)),
        allow_link_local=bool(network.get("allow_link_local", False)),
        allowed_hosts=frozenset(network.get("allowed_hosts") or ()),
        max_redirects=int(network.get("max_redirects", 5)),
    )


def _build(spec: dict[str, Any], at: tuple[Any, ...], smap: SourceMap, defaults: dict[str, Any], policy: NetPolicy,
           base_dir: Path, ctx: _Context) -> list[Tool]:
    kind = spec["kind"]
    if kind == "http":
        hs = http_spec(spec, at, smap, defaults, policy, ctx)
        try:
            return [make_http_tool(hs)]
        except ToolDefinitionError as e:
            raise definition_error(e, smap, at, "arguments") from None
    if kind == "python":
        return [_python_tool(spec, at, smap)]
    if kind == "builtin":
        return [_builtin_tool(spec, at, smap)]
    if kind == "mcp":
        from .yaml_mcp import mcp_entry_tools  # the MCP SDK loads only for registries that use it

        return mcp_entry_tools(spec, at, smap, policy, base_dir, auth_from_env(spec.get("auth"), at, smap, ctx)[0])
    return openapi_tools(spec, at, smap, defaults, policy, base_dir, ctx)


def _import_function(ref: str, at: tuple[Any, ...], smap: SourceMap) -> Any:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise smap.error(f"cannot import module {module_name!r} for {ref!r}: {e}", (*at, "function"),
                         hint="install the package or put its directory on PYTHONPATH") from None
    except Exception as e:  # noqa: BLE001 - the module's own import-time failure, reported with its type
        raise smap.error(f"importing {module_name!r} failed: {type(e).__name__}: {e}", (*at, "function")) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            raise smap.error(f"{module_name!r} has no attribute {attr!r}", (*at, "function"),
                             hint=f"did you mean {module_name}:{close[0]}?" if close else None)
        obj = getattr(obj, part)
    if not callable(obj):
        raise smap.error(f"{ref!r} is a {type(obj).__name__}, not a function", (*at, "function"))
    return obj


def _overrides(t: Tool, spec: dict[str, Any]) -> Tool:
    changes = {k: spec[k] for k in _OVERRIDES if k in spec}
    if "name" in spec:
        changes["name"] = spec["name"]
    return dataclasses.replace(t, **changes) if changes else t


def _python_tool(spec: dict[str, Any], at: tuple[Any, ...], smap: SourceMap) -> Tool:
    fn = _import_function(spec["function"], at, smap)
    try:
        if isinstance(fn, Tool):
            return _overrides(fn, spec)
        if "parameters" in spec:
            doc = (fn.__doc__ or "").strip().split("\n\n")[0].strip()
            return _overrides(Tool(name=spec.get("name", fn.__name__), description=spec.get("description", doc),
                                   parameters=spec["parameters"], fn=fn), spec)
        return _overrides(make_tool(fn, name=spec.get("name")), spec)
    except ToolDefinitionError as e:
        if "parameters" in spec and e.schema_path:
            raise definition_error(e, smap, at, "parameters") from None
        raise smap.error(f"{spec['function']}: {e}", (*at, "function")) from None


def _builtin_tool(spec: dict[str, Any], at: tuple[Any, ...], smap: SourceMap) -> Tool:
    try:
        t = load_builtin(spec["builtin"], **(spec.get("options") or {}))
    except ConfigError as e:
        raise smap.error(str(e.args[0]), (*at, "builtin"), hint=e.hint) from None
    try:
        return _overrides(t, spec)
    except ToolDefinitionError as e:
        raise smap.error(str(e), at) from None
