"""A small JSONPath subset for selecting the part of an API response the model should see.

Supported: ``$`` (the root), ``.name`` / ``['name']`` (a key), ``[0]`` / ``[-1]`` (an index), ``[1:3]`` (a slice),
``[*]`` / ``.*`` (every element or value), ``..name`` (the key at any depth), and ``[?(@.key == value)]`` style
filters with ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` against a number, a quoted string, true, false or null.

A path with a wildcard, slice, filter or ``..`` yields a list; a plain path yields the single value (or raises
:class:`KeyError` naming the missing step). Paths are compiled once, at load time, so a bad expression is a config
error rather than a tool failure.

Example::

    JsonPath("$.stores[?(@.open_now == true)].name").select(data)
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["JsonPath", "JsonPathError"]


class JsonPathError(ValueError):
    """A JSONPath expression that cannot be parsed; ``position`` is the character offset of the problem."""

    def __init__(self, message: str, position: int) -> None:
        self.position = position
        super().__init__(message)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}
_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_\-$]*")
_FILTER = re.compile(
    r"\?\(\s*@((?:\.[A-Za-z_][A-Za-z0-9_\-]*)+)\s*(?:(==|!=|<=|>=|<|>)\s*"
    r"(\"[^\"]*\"|'[^']*'|-?\d+(?:\.\d+)?|true|false|null))?\s*\)"
)
_SLICE = re.compile(r"(-?\d*)\s*:\s*(-?\d*)")


@dataclass(frozen=True)
class _Step:
    kind: str  # key, index, slice, wild, descend, filter
    arg: Any = None


def _literal(text: str) -> Any:
    if text[0] in "'\"":
        return text[1:-1]
    return json.loads(text)


class JsonPath:
    """A compiled path; ``select(data)`` applies it."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.steps = self._parse(expr.strip())
        self.multi = any(s.kind in ("slice", "wild", "descend", "filter") for s in self.steps)

    def __repr__(self) -> str:
        return f"JsonPath({self.expr!r})"

    @staticmethod
    def _parse(expr: str) -> list[_Step]:
        if not expr.startswith("$"):
            raise JsonPathError(f"a path starts with '$', got {expr[:1]!r}", 0)
        steps: list[_Step] = []
        i = 1
        while i < len(expr):
            c = expr[i]
            if expr.startswith("..", i):
                m = _NAME.match(expr, i + 2)
                if not m:
                    raise JsonPathError("'..' must be followed by a key name", i)
                steps.append(_Step("descend", m.group()))
                i = m.end()
            elif c == ".":
                if expr.startswith(".*", i):
                    steps.append(_Step("wild"))
                    i += 2
                    continue
                m = _NAME.match(expr, i + 1)
                if not m:
                    raise JsonPathError("'.' must be followed by a key name or '*'", i)
                steps.append(_Step("key", m.group()))
                i = m.end()
            elif c == "[":
                end = expr.find("]", i)
                if end < 0:
                    raise JsonPathError("unclosed '['", i)
                inner = expr[i + 1:end].strip()
                if inner == "*":
                    steps.append(_Step("wild"))
                elif inner[:1] in "'\"" and len(inner) >= 2 and inner[-1] == inner[0]:
                    steps.append(_Step("key", inner[1:-1]))
                elif re.fullmatch(r"-?\d+", inner):
                    steps.append(_Step("index", int(inner)))
                elif _SLICE.fullmatch(inner):
                    a, b = _SLICE.fullmatch(inner).groups()  # type: ignore[union-attr]
                    steps.append(_Step("slice", (int(a) if a else None, int(b) if b else None)))
                elif inner.startswith("?"):
                    m = _FILTER.fullmatch(inner)
                    if not m:
                        raise JsonPathError(
                            "a filter looks like [?(@.key == value)] (value: number, 'string', true, false, null)", i
                        )
                    keys = m.group(1).split(".")[1:]
                    op = m.group(2)
                    value = _literal(m.group(3)) if op else None
                    steps.append(_Step("filter", (keys, op, value)))
                else:
                    raise JsonPathError(f"cannot read [{inner}]: expected an index, a 'key', *, a slice or a filter", i)
                i = end + 1
            else:
                raise JsonPathError(f"unexpected {c!r}: expected '.', '..' or '['", i)
        return steps

    def select(self, data: Any) -> Any:
        """Apply the path. Multi-valued paths return a list; a single path raises KeyError when a step is missing."""
        if not self.multi:
            cur = data
            for s in self.steps:
                try:
                    cur = cur[s.arg]
                except (KeyError, IndexError, TypeError):
                    raise KeyError(f"{self.expr}: no {s.arg!r} in the response at this point") from None
            return cur
        values = [data]
        for s in self.steps:
            values = [v for cur in values for v in _apply(s, cur)]
        return values


def _apply(step: _Step, cur: Any) -> list[Any]:
    if step.kind == "key":
        return [cur[step.arg]] if isinstance(cur, dict) and step.arg in cur else []
    if step.kind == "index":
        if isinstance(cur, list) and -len(cur) <= step.arg < len(cur):
            return [cur[step.arg]]
        return []
    if step.kind == "slice":
        return list(cur[slice(*step.arg)]) if isinstance(cur, list) else []
    if step.kind == "wild":
        return list(cur.values()) if isinstance(cur, dict) else list(cur) if isinstance(cur, list) else []
    if step.kind == "descend":
        found: list[Any] = []
        _descend(cur, step.arg, found)
        return found
    keys, op, value = step.arg
    items = cur if isinstance(cur, list) else list(cur.values()) if isinstance(cur, dict) else []
    out = []
    for item in items:
        v: Any = item
        for k in keys:
            if not isinstance(v, dict) or k not in v:
                break
            v = v[k]
        else:
            try:
                if op is None or _OPS[op](v, value):
                    out.append(item)
            except TypeError:  # comparing a string with a number: not a match
                continue
    return out


def _descend(cur: Any, key: str, found: list[Any]) -> None:
    if isinstance(cur, dict):
        if key in cur:
            found.append(cur[key])
        for v in cur.values():
            _descend(v, key, found)
    elif isinstance(cur, list):
        for v in cur:
            _descend(v, key, found)
