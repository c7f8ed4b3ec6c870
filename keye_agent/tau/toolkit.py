"""`Toolkit`: a domain's tools as methods over its database.

A toolkit holds one database (a pydantic model or a plain dict) and marks its tool methods with :func:`env_tool`;
other public methods (``assert_*`` checks, ``add_*`` set-up helpers) are reachable by tasks' initialization actions
and env assertions but are not shown to the model. Tool schemas come from type hints and docstrings through
``keye_agent.tools``'s ``@tool``, so a toolkit method is documented exactly like any other tool::

    class CounterTools(Toolkit):
        @env_tool("write")
        def increment(self, name: str) -> int:
            '''Add one to a counter.

            Args:
                name: The counter's name.
            '''
            self.db["counters"][name] += 1
            return self.db["counters"][name]
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from keye_agent.errors import KeyeAgentError, ToolExecutionError
from keye_agent.tools import Tool, ToolRegistry
from keye_agent.tools.decorator import build_schema

from .lazydb import LazyDB
from .messages import tool_output_text

ToolKind = Literal["read", "write", "think", "generic"]
_MARK = "__keye_env_tool__"


def env_tool(kind: ToolKind = "read", *, mutates: bool | None = None) -> Callable[[Callable[..., Any]], Any]:
    """Mark a toolkit method as a tool the model may call. ``mutates`` (default: ``kind == "write"``) says whether
    the call changes the database; only such calls are replayed when the evaluator rebuilds the final state."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, _MARK, (kind, kind == "write" if mutates is None else mutates))
        return fn

    return mark


def deep_merge(base: Any, update: Any) -> Any:
    """Merge ``update`` into ``base``: objects merge key by key, recursively; anything else is replaced
    (tau2-bench's rule for ``initialization_data``)."""
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for k, v in update.items():
            out[k] = deep_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(update)


def json_hash(value: Any) -> str:
    """SHA-256 of the sorted-keys JSON of ``value`` (the same text tau2-bench hashes, so the digests agree)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


async def _unbound(**arguments: Any) -> Any:
    raise KeyeAgentError("a toolkit tool prototype was called without a toolkit")


_PROTOTYPES: dict[tuple[type, str], Tool] = {}


class Toolkit:
    """Tools over one database. Subclasses mark tool methods with :func:`env_tool`."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self._registry: ToolRegistry | None = None

    # ---- what the toolkit offers ---------------------------------------------------------------------------

    @classmethod
    def tool_names(cls) -> list[str]:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if hasattr(attr, _MARK) and name not in names:
                    names.append(name)
        return names

    def has_tool(self, name: str) -> bool:
        return name in self.tool_names()

    def tool_kind(self, name: str) -> ToolKind:
        return getattr(getattr(type(self), name), _MARK)[0]

    def mutates(self, name: str) -> bool:
        return getattr(getattr(type(self), name), _MARK)[1]

    def function(self, name: str) -> Callable[..., Any]:
        """Any public method (tool or helper), for initialization actions and env assertions."""
        fn = getattr(self, name, None) if not name.startswith("_") else None
        if fn is None or not callable(fn):
            raise KeyeAgentError(f"{type(self).__name__} has no function {name!r}",
                                 hint=f"tools: {', '.join(self.tool_names())}")
        return fn

    def registry(self, include: list[str] | None = None) -> ToolRegistry:
        """The tools as a :class:`ToolRegistry` bound to this toolkit (so to its current database)."""
        if include is None and self._registry is not None:
            return self._registry
        names = self.tool_names()
        if include is not None:
            unknown = sorted(set(include) - set(names))
            if unknown:
                raise KeyeAgentError(f"{type(self).__name__} has no tools {unknown}; it has {names}")
            names = [n for n in names if n in include]
        reg = ToolRegistry([self._make_tool(n) for n in names])
        if include is None:
            self._registry = reg
        return reg

    def _make_tool(self, name: str) -> Tool:
        # schemas are built and checked once per class (jsonschema's meta-validation dominates otherwise); each
        # toolkit gets a shallow copy whose function is bound to it
        proto = _PROTOTYPES.get((type(self), name))
        if proto is None:
            schema, description, coerce = build_schema(getattr(type(self), name), name)
            proto = Tool(name=name, description=description, parameters=schema, fn=_unbound, coerce=coerce,
                         mutates_state=self.mutates(name), timeout_s=60.0, retries=0,
                         metadata={"kind": self.tool_kind(name)})
            _ = proto.validator, proto.is_async
            _PROTOTYPES[(type(self), name)] = proto

        async def call(**arguments: Any) -> str:
            return tool_output_text(await self.invoke(name, arguments))

        t = copy.copy(proto)
        t.fn = call
        return t

    async def invoke(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run a tool method; its own exceptions become :class:`ToolExecutionError` with their message, which is
        what the model (and the trajectory, as ``Error: <message>``) sees."""
        try:
            value = getattr(self, name)(**arguments)
            if inspect.isawaitable(value):
                value = await value
        except KeyeAgentError:
            raise
        except Exception as e:  # noqa: BLE001 - a domain rule refusing the call is the model's business
            raise ToolExecutionError(str(e) or type(e).__name__, tool=name) from e
        return value

    # ---- the database --------------------------------------------------------------------------------------

    def dump_db(self) -> Any:
        """The database as JSON-like data (pydantic models dumped with their defaults, as tau2-bench hashes them)."""
        if isinstance(self.db, BaseModel):
            return self.db.model_dump()
        if isinstance(self.db, LazyDB):
            return self.db.dump()  # shares the records not touched: read it, do not mutate it
        return copy.deepcopy(self.db)

    def db_hash(self) -> str | None:
        if isinstance(self.db, LazyDB):
            return self.db.hash()
        return None if self.db is None else json_hash(self.dump_db())

    def update_db(self, data: dict[str, Any] | None) -> None:
        """Merge ``data`` into the database and validate the result with the database's model."""
        if isinstance(self.db, LazyDB):
            self.db = self.db.merged(data)
            return
        merged = deep_merge(self.dump_db(), data or {})
        self.db = type(self.db).model_validate(merged) if isinstance(self.db, BaseModel) else merged

    async def aclose(self) -> None:
        """Release what the toolkit holds (HTTP clients, in-process servers). Nothing by default."""
