"""Domain tools declared in YAML: a ``tools.yaml`` beside ``db.json`` describes each tool's arguments, its kind
and its body as steps over the database (or a Python function of the folder), so a domain needs no Python class.

::

    tools:
      - name: increment
        kind: write                      # read (default) | write | generic
        description: Add to a counter and return it.
        arguments:                       # JSON Schema per argument; required: true marks the required ones
          name: {type: string, description: "The counter's name", required: true}
          by: {type: integer, description: How much to add, default: 1}
        steps:
          - require: counters/{name}     # a path into db.json; {argument} is filled in
            error: Counter {name} not found
          - add: counters/{name}/value
            value: "{by}"
          - get: counters/{name}         # the tool returns the last step's value (or `returns:`)

The steps (each may store its value under a name with ``as: NAME``, usable later as ``{NAME}``):

=============================  ==================================================================================
``get: PATH``                  the value there (``error:`` when missing; default "PATH not found")
``require: PATH``              fail with ``error:`` unless PATH exists
``check: PATH`` + ``equals:``  fail with ``error:`` unless the value there equals ``equals`` (or is one of ``in:``)
``find: TABLE`` + ``where:``   the first record of an object table whose fields equal ``where``'s (``error:``
                               when none); ``return: key`` gives its key instead of the record
``list: TABLE`` (+ ``where:``) the records of a table, all or those matching
``set: PATH`` + ``value:``     write a value (the parent must exist)
``update: PATH`` + ``value:``  merge a mapping's fields into the object there (which must exist)
``add: PATH`` + ``value:``     add a number to the number there
``append: PATH`` + ``value:``  append to the list there
``delete: PATH``               remove the key there
``next_id: TABLE``             ``prefix`` + (number of records + 1), e.g. ``task_3``
``python: FILE.py:FUNCTION``   (as a tool's whole body) ``FUNCTION(db, **arguments)``; raise to refuse the call;
                               an ``async def`` is awaited (so a slow body lets other simulations run meanwhile)
=============================  ==================================================================================

A string that is exactly ``"{name}"`` stands for that argument's or variable's value (its type kept); other
strings are filled in as text. A tool with ``offered: false`` is not shown to the model; tasks may still call it
(initialization actions, env assertions). Mistakes are reported with the file, line and a fix.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keye_agent.errors import KeyeAgentError, ToolExecutionError
from keye_agent.tools import Tool, ToolRegistry
from keye_agent.tools.yaml_source import SourceMap, read_yaml

from .messages import tool_output_text
from .toolkit import Toolkit

OPS = ("get", "require", "check", "find", "list", "set", "update", "add", "append", "delete", "next_id")
_STEP_KEYS = {"get": {"error"}, "require": {"error"}, "check": {"equals", "in", "error"},
              "find": {"where", "error", "return"}, "list": {"where"}, "set": {"value"},
              "update": {"value", "error"}, "add": {"value"},
              "append": {"value"}, "delete": {"error"}, "next_id": {"prefix"}}
_TOOL_KEYS = {"name", "kind", "description", "arguments", "steps", "returns", "python", "offered"}
_ARG_KEYS = {"type", "description", "enum", "items", "properties", "minimum", "maximum", "minLength", "maxLength",
             "minItems", "maxItems", "pattern", "format", "default", "required", "additionalProperties"}
_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class DbTool:
    name: str
    kind: str
    description: str
    parameters: dict[str, Any]
    defaults: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    returns: Any = None
    python: Callable[..., Any] | None = None
    offered: bool = True


# ---- templates and paths ---------------------------------------------------------------------------------------

def _names_in(template: Any) -> set[str]:
    if isinstance(template, str):
        return {f for _, f, _, _ in string.Formatter().parse(template) if f}
    if isinstance(template, dict):
        return set().union(*(_names_in(v) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(_names_in(v) for v in template)) if template else set()
    return set()


def fill(template: Any, scope: dict[str, Any]) -> Any:
    """``template`` with ``{name}`` filled from ``scope`` ("{name}" alone keeps the value's type)."""
    if isinstance(template, str):
        m = _WHOLE.match(template)
        if m:
            return copy.deepcopy(scope[m.group(1)])
        return template.format_map(scope) if "{" in template else template
    if isinstance(template, dict):
        return {k: fill(v, scope) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, scope) for v in template]
    return template


def _walk(db: Any, path: str) -> tuple[Any, str]:
    """(the container holding the last segment of ``path``, that segment); KeyError when a parent is missing."""
    parts = [p for p in path.split("/") if p]
    node = db
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    return node, parts[-1]


def _lookup(db: Any, path: str) -> Any:
    parent, last = _walk(db, path)
    return parent[int(last)] if isinstance(parent, list) else parent[last]


def _exists(db: Any, path: str) -> bool:
    try:
        _lookup(db, path)
        return True
    except (KeyError, IndexError, ValueError, TypeError):
        return False


def _matches(record: Any, where: dict[str, Any]) -> bool:
    return isinstance(record, dict) and all(record.get(k) == v for k, v in where.items())


# ---- running a tool ----------------------------------------------------------------------------------------------

def run_steps(tool: DbTool, db: Any, arguments: dict[str, Any]) -> Any:
    """Run a YAML tool's steps on ``db`` (mutated in place). A refused call raises ValueError with its message."""
    scope = {**tool.defaults, **arguments}
    value: Any = None
    for step in tool.steps:
        op = next(k for k in OPS if k in step)
        path = str(fill(step[op], scope))
        error = fill(step.get("error", f"{path} not found"), scope) if op != "check" else None
        if op in ("get", "require"):
            if not _exists(db, path):
                raise ValueError(error)
            value = copy.deepcopy(_lookup(db, path)) if op == "get" else True
        elif op == "check":
            got = _lookup(db, path) if _exists(db, path) else None
            ok = got == fill(step["equals"], scope) if "equals" in step else got in fill(step["in"], scope)
            if not ok:
                raise ValueError(fill(step.get("error", f"{path} is {got!r}"), scope))
            value = got
        elif op in ("find", "list"):
            table = _lookup(db, path) if _exists(db, path) else {}
            where = fill(step.get("where") or {}, scope)
            items = table.items() if isinstance(table, dict) else enumerate(table)
            hits = [(k, r) for k, r in items if _matches(r, where)]
            if op == "list":
                value = copy.deepcopy([r for _, r in hits])
            elif not hits:
                raise ValueError(error)
            else:
                value = hits[0][0] if step.get("return") == "key" else copy.deepcopy(hits[0][1])
        elif op == "next_id":
            table = _lookup(db, path) if _exists(db, path) else {}
            value = f"{fill(step.get('prefix', ''), scope)}{len(table) + 1}"
        else:
            try:
                parent, last = _walk(db, path)
            except (KeyError, IndexError, ValueError, TypeError):
                raise ValueError(f"{path.rsplit('/', 1)[0]} not found") from None
            key: Any = int(last) if isinstance(parent, list) else last
            if op == "set":
                parent[key] = value = fill(step["value"], scope)
            elif op == "update":
                if not _exists(db, path):
                    raise ValueError(error)
                if not isinstance(parent[key], dict):
                    raise ValueError(f"{path} is not an object")
                parent[key].update(fill(step["value"], scope))
                value = copy.deepcopy(parent[key])
            elif op == "add":
                if not isinstance(parent.get(key) if isinstance(parent, dict) else parent[key], int | float):
                    raise ValueError(f"{path} is not a number")
                parent[key] += fill(step["value"], scope)
                value = parent[key]
            elif op == "append":
                if not isinstance(parent.get(key) if isinstance(parent, dict) else parent[key], list):
                    raise ValueError(f"{path} is not a list")
                item = fill(step["value"], scope)
                parent[key].append(item)
                value = item
            else:  # delete
                if not _exists(db, path):
                    raise ValueError(error)
                value = parent.pop(key)
        if "as" in step:
            scope[step["as"]] = value
    return fill(tool.returns, scope) if tool.returns is not None else value


class DbToolkit(Toolkit):
    """The YAML tools of a domain folder over a plain-JSON database (db.json's data)."""

    def __init__(self, tools: dict[str, DbTool], db: Any) -> None:
        super().__init__(db)
        self._tools = tools

    def tool_names(self) -> list[str]:  # type: ignore[override]
        return [n for n, t in self._tools.items() if t.offered]

    def has_tool(self, name: str) -> bool:
        return name in self.tool_names()

    def tool_kind(self, name: str) -> str:  # type: ignore[override]
        return self._tools[name].kind

    def mutates(self, name: str) -> bool:
        return self._tools[name].kind == "write"

    def function(self, name: str) -> Callable[..., Any]:
        if name not in self._tools:
            raise KeyeAgentError(f"the domain's tools.yaml has no tool {name!r}", hint=f"tools: {', '.join(self._tools)}")
        return lambda **arguments: self._run(name, arguments)

    def _run(self, name: str, arguments: dict[str, Any]) -> Any:
        t = self._tools[name]
        if t.python is not None:
            return t.python(self.db, **arguments)
        return run_steps(t, self.db, arguments)

    def _make_tool(self, name: str) -> Tool:
        t = self._tools[name]

        async def call(**arguments: Any) -> str:
            return tool_output_text(await self.invoke(name, arguments))

        return Tool(name=name, description=t.description, parameters=t.parameters, fn=call,
                    mutates_state=t.kind == "write", timeout_s=60.0, retries=0, metadata={"kind": t.kind})

    def registry(self, include: list[str] | None = None) -> ToolRegistry:
        if include is None and self._registry is not None:
            return self._registry
        reg = ToolRegistry([self._make_tool(n) for n in self.tool_names() if include is None or n in include])
        if include is None:
            self._registry = reg
        return reg

    async def invoke(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            value = self._run(name, arguments)
            return await value if inspect.isawaitable(value) else value
        except KeyeAgentError:
            raise
        except Exception as e:  # noqa: BLE001 - a refused call is the model's business, as in Toolkit.invoke
            raise ToolExecutionError(str(e) or type(e).__name__, tool=name) from e


# ---- loading and checking the YAML -------------------------------------------------------------------------------

def load_db_tools(path: Path) -> dict[str, DbTool]:
    """The tools of a domain's tools.yaml, every mistake reported as file:line with a fix."""
    data, smap = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("tools"), list) or not data["tools"]:
        raise smap.error("expected a mapping with a non-empty 'tools' list", ("tools",) if isinstance(data, dict)
                         else (), hint="start the file with `tools:` and one `- name: ...` entry per tool")
    unknown = set(data) - {"tools", "version", "description"}
    if unknown:
        k = sorted(unknown)[0]
        raise smap.error(f"unknown top-level key {k!r}", (k,), key=True, hint="top-level keys: tools, description")
    tools: dict[str, DbTool] = {}
    for i, spec in enumerate(data["tools"]):
        t = _tool(spec, ("tools", i), smap, path.parent)
        if t.name in tools:
            raise smap.error(f"tool {t.name!r} is declared twice", ("tools", i, "name"),
                             hint="give each tool its own name")
        tools[t.name] = t
    return tools


def _tool(spec: Any, at: tuple[Any, ...], smap: SourceMap, folder: Path) -> DbTool:
    if not isinstance(spec, dict):
        raise smap.error("a tool is a mapping with name, description, arguments and steps", at)
    for k in spec:
        if k not in _TOOL_KEYS:
            raise smap.error(f"unknown key {k!r} in a tool", (*at, k), key=True,
                             hint=f"a tool has: {', '.join(sorted(_TOOL_KEYS))}")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise smap.error(f"tool name {name!r} is not a valid name", (*at, "name"),
                         hint="letters, digits and underscores, e.g. get_order")
    if not isinstance(spec.get("description"), str) or not spec["description"].strip():
        raise smap.error(f"tool {name!r} has no description", at,
                         hint="add `description: what the tool does` (the model reads it to choose tools)")
    kind = spec.get("kind", "read")
    if kind not in ("read", "write", "generic"):
        raise smap.error(f"kind {kind!r} is not read, write or generic", (*at, "kind"),
                         hint="write: the tool changes the database; read: it only looks")
    params, defaults = _arguments(spec.get("arguments") or {}, (*at, "arguments"), smap, name)
    has_steps, has_python = "steps" in spec, "python" in spec
    if has_steps == has_python:
        raise smap.error(f"tool {name!r} needs exactly one of steps: or python:", at,
                         hint="steps: a list of operations on db.json; python: FILE.py:FUNCTION for the rest")
    tool = DbTool(name, kind, spec["description"].strip(), params, defaults, returns=spec.get("returns"),
                  offered=bool(spec.get("offered", True)))
    if has_python:
        tool.python = _python_body(spec["python"], (*at, "python"), smap, folder)
        return tool
    if not isinstance(spec["steps"], list) or not spec["steps"]:
        raise smap.error(f"tool {name!r}: steps must be a non-empty list", (*at, "steps"))
    known = set(params["properties"])
    for j, step in enumerate(spec["steps"]):
        _check_step(step, (*at, "steps", j), smap, known)
        if isinstance(step, dict) and "as" in step:
            known.add(step["as"])
    _check_names(spec.get("returns"), known, (*at, "returns"), smap)
    tool.steps = spec["steps"]
    return tool


def _arguments(args: Any, at: tuple[Any, ...], smap: SourceMap, tool: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(args, dict):
        raise smap.error(f"tool {tool!r}: arguments must be a mapping of name to schema", at,
                         hint="e.g. arguments: {order_id: {type: string, description: ..., required: true}}")
    props, required, defaults = {}, [], {}
    for a, schema in args.items():
        if not isinstance(schema, dict) or not schema.get("description"):
            raise smap.error(f"argument {a!r} of tool {tool!r} needs a type and a description", (*at, a),
                             hint=f"{a}: {{type: string, description: what it means}}")
        bad = set(schema) - _ARG_KEYS
        if bad:
            k = sorted(bad)[0]
            raise smap.error(f"unknown key {k!r} in argument {a!r}", (*at, a, k), key=True,
                             hint=f"JSON Schema keys, and required: true; allowed: {', '.join(sorted(_ARG_KEYS))}")
        props[a] = {k: v for k, v in schema.items() if k != "required"}
        if schema.get("required"):
            required.append(a)
        else:
            defaults[a] = schema.get("default")
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}, defaults


def _check_step(step: Any, at: tuple[Any, ...], smap: SourceMap, known: set[str]) -> None:
    ops = [k for k in OPS if isinstance(step, dict) and k in step]
    if len(ops) != 1:
        raise smap.error("a step has exactly one operation", at, hint=f"operations: {', '.join(OPS)}")
    op = ops[0]
    for k in step:
        if k != op and k != "as" and k not in _STEP_KEYS[op]:
            raise smap.error(f"unknown key {k!r} in a {op} step", (*at, k), key=True,
                             hint=f"a {op} step takes: {', '.join(sorted(_STEP_KEYS[op] | {'as'}))}")
    if not isinstance(step[op], str) or not step[op].strip("/"):
        raise smap.error(f"{op}: needs a path into db.json", (*at, op), hint="e.g. orders/{order_id}/status")
    if op in ("set", "update", "add", "append") and "value" not in step:
        raise smap.error(f"a {op} step needs value:", at, hint=f"{op}: {step[op]}\n  value: ...")
    if op == "update" and not isinstance(step["value"], dict):
        raise smap.error("an update step's value: is a mapping of the fields to change", (*at, "value"),
                         hint="e.g. value: {status: cancelled, note: \"{reason}\"}")
    if op == "check" and ("equals" in step) == ("in" in step):
        raise smap.error("a check step needs equals: or in:", at, hint="e.g. equals: pending")
    if "as" in step and not (isinstance(step["as"], str) and _NAME.match(step["as"])):
        raise smap.error(f"as: {step['as']!r} is not a valid name", (*at, "as"))
    for k in step:
        if k != "as":
            _check_names(step[k], known, (*at, k), smap)


def _check_names(template: Any, known: set[str], at: tuple[Any, ...], smap: SourceMap) -> None:
    try:
        names = _names_in(template)
    except ValueError as e:
        raise smap.error(f"bad template: {e}", at, hint="write braces as {name}; a literal brace as {{ or }}") from None
    missing = sorted(names - known)
    if missing:
        raise smap.error(f"{{{missing[0]}}} is neither an argument nor an earlier step's `as:` name", at,
                         hint=f"known here: {', '.join(sorted(known)) or 'none'}")


def _python_body(ref: Any, at: tuple[Any, ...], smap: SourceMap, folder: Path) -> Callable[..., Any]:
    if not isinstance(ref, str) or ":" not in ref:
        raise smap.error(f"python: {ref!r} is not FILE.py:FUNCTION", at, hint="e.g. python: rules.py:refund")
    file, _, fn_name = ref.partition(":")
    target = (folder / file).resolve()
    if not target.is_file() or target.parent != folder.resolve():
        raise smap.error(f"python: {file} is not a file of the domain folder", at,
                         hint=f"put {file} beside tools.yaml in {folder}")
    spec = importlib.util.spec_from_file_location(f"keye_tau_yaml_{folder.name}_{target.stem}", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the file's own import failure, reported against the YAML line
        raise smap.error(f"importing {file} failed: {type(e).__name__}: {e}", at) from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise smap.error(f"{file} has no function {fn_name!r}", at,
                         hint=f"define `def {fn_name}(db, **arguments):` in {file}")
    return fn


def db_tools_environment(folder: Path, policy: str) -> Callable[[], Any]:
    """The environment factory of a folder with tools.yaml over db.json (and optionally user_tools.yaml over
    user_db.json, the simulated user's own tools): each environment gets its own copy of the data."""
    from .domain import _read_json
    from .environment import Environment

    tools = load_db_tools(folder / "tools.yaml")
    db = _read_json(folder / "db.json")
    user_tools = load_db_tools(folder / "user_tools.yaml") if (folder / "user_tools.yaml").is_file() else None
    user_db = _read_json(folder / "user_db.json") if (folder / "user_db.json").is_file() else {}

    async def make() -> Environment:
        user_kit = DbToolkit(user_tools, copy.deepcopy(user_db)) if user_tools is not None else None
        return Environment(folder.name, policy, DbToolkit(tools, copy.deepcopy(db)), user_kit)

    return make
