"""`@tool`: build a :class:`Tool` from a function's type hints and docstring (pydantic does the typing).

Every parameter needs a type hint and a description (from the docstring's ``Args:`` section, a Sphinx
``:param x:`` line, or ``Annotated[T, Field(description=...)]``); a missing one fails at definition time, because a
model that does not know what an argument means will guess.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args, get_origin, overload

import pydantic
from pydantic import Field
from pydantic.fields import FieldInfo

from keye_agent.errors import ToolDefinitionError

from .base import Tool

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_ARG_LINE = re.compile(r"^(\s*)\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_SPHINX = re.compile(r"^\s*:param\s+(?:[^:]+\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google- or Sphinx-style docstring into (description, {argument: description})."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    desc_lines: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent = None
    for line in lines:
        m = _SECTION.match(line)
        if m:
            section = m.group(1).lower()
            current, arg_indent = None, None
            continue
        sp = _SPHINX.match(line)
        if sp:
            current = sp.group(1)
            args[current] = sp.group(2).strip()
            section = "sphinx"
            continue
        if section in ("args", "arguments", "parameters", "params"):
            am = _ARG_LINE.match(line)
            indent = len(line) - len(line.lstrip())
            if am and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = am.group(2)
                args[current] = am.group(4).strip()
            elif current and line.strip():
                args[current] = (args[current] + " " + line.strip()).strip()
        elif section == "sphinx":
            if line.strip().startswith(":"):
                current = None
            elif current and line.strip():
                args[current] = (args[current] + " " + line.strip()).strip()
        elif section is None:
            desc_lines.append(line)
    return "\n".join(desc_lines).strip(), args


_SIMPLE = (str, int, float, bool, type(None), Any)


def _is_plain(tp: Any) -> bool:
    """True when JSON values need no conversion to reach the function (no models, enums, dates...)."""
    if tp in _SIMPLE:
        return True
    origin = get_origin(tp)
    if origin is Annotated:
        return _is_plain(get_args(tp)[0])
    if origin is Literal:
        return True
    if origin in (typing.Union, types.UnionType, list, dict, tuple):
        # tuples come from JSON as lists: convert them
        return origin is not tuple and all(_is_plain(a) for a in get_args(tp))
    if tp in (list, dict):
        return True
    return False


def _strip_titles(schema: Any) -> Any:
    """Remove pydantic's auto-generated "title" keywords (noise for the model), keeping property names."""
    if isinstance(schema, dict):
        out = {}
        for k, v in schema.items():
            if k == "title" and isinstance(v, str):
                continue
            if k in ("properties", "$defs", "definitions") and isinstance(v, dict):
                out[k] = {name: _strip_titles(sub) for name, sub in v.items()}
            else:
                out[k] = _strip_titles(v)
        return out
    if isinstance(schema, list):
        return [_strip_titles(s) for s in schema]
    return schema


def build_schema(fn: Callable[..., Any], name: str) -> tuple[dict[str, Any], str, Callable[[dict], dict] | None]:
    """(JSON Schema of the arguments, description from the docstring, coercion function or None)."""
    description, arg_docs = parse_docstring(fn.__doc__)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:  # noqa: BLE001 - any failure to resolve hints is a definition error, named here
        raise ToolDefinitionError(f"tool {name!r}: cannot resolve type hints: {e}") from e
    sig = inspect.signature(fn)
    fields: dict[str, Any] = {}
    plain = True
    for pname, param in sig.parameters.items():
        if pname in ("self", "cls"):
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool {name!r}: *{pname} / **{pname} cannot be described to a model; list the arguments explicitly"
            )
        if pname not in hints:
            raise ToolDefinitionError(
                f"tool {name!r}: argument {pname!r} has no type hint; add one (e.g. `{pname}: str`)"
            )
        tp = hints[pname]
        field_info = None
        if get_origin(tp) is Annotated:
            for meta in get_args(tp)[1:]:
                if isinstance(meta, FieldInfo):
                    field_info = meta
                elif isinstance(meta, str) and pname not in arg_docs:
                    arg_docs[pname] = meta
            tp_inner = get_args(tp)[0]
        else:
            tp_inner = tp
        desc = arg_docs.get(pname) or (field_info.description if field_info else None)
        if not desc:
            raise ToolDefinitionError(
                f"tool {name!r}: argument {pname!r} has no description; document it in the docstring's Args: "
                f"section (`{pname}: what it means`)"
            )
        plain = plain and _is_plain(tp_inner)
        default = ... if param.default is inspect.Parameter.empty else param.default
        if field_info is not None:
            fi = pydantic.fields.FieldInfo.merge_field_infos(field_info, Field(default=default, description=desc))
            fields[pname] = (tp_inner, fi)
        else:
            fields[pname] = (tp_inner, Field(default=default, description=desc))
    if not description:
        raise ToolDefinitionError(f"tool {name!r} has no docstring; its first lines are the description the model reads")
    try:
        model = pydantic.create_model(f"{name}_arguments", **fields)  # type: ignore[call-overload]
        schema = _strip_titles(model.model_json_schema())
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as e:
        raise ToolDefinitionError(f"tool {name!r}: cannot build a JSON Schema from its type hints: {e}") from e
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    schema["additionalProperties"] = False
    coerce = None
    if not plain:
        names = list(fields)

        def coerce(args: dict[str, Any]) -> dict[str, Any]:
            inst = model.model_validate(args)
            return {n: getattr(inst, n) for n in names if n in args or fields[n][1].default is not ...}

    return schema, description, coerce


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = 60.0,
    retries: int = 2,
    mutates_state: bool = False,
    requires_approval: bool | None = None,
    inline: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = 60.0,
    retries: int = 2,
    mutates_state: bool = False,
    requires_approval: bool | None = None,
    inline: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` from a typed, documented function.

    Example::

        @tool
        def get_weather(city: str, units: Literal["C", "F"] = "C") -> str:
            '''Current weather for a city.

            Args:
                city: City name, e.g. "Paris".
                units: Temperature units.
            '''
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        tname = name or f.__name__
        schema, doc_desc, coerce = build_schema(f, tname)
        return Tool(
            name=tname,
            description=description or doc_desc,
            parameters=schema,
            fn=f,
            timeout_s=timeout_s,
            retries=retries,
            mutates_state=mutates_state,
            requires_approval=requires_approval,
            inline=inline,
            coerce=coerce,
        )

    if fn is not None:
        return wrap(fn)
    return wrap


__all__ = ["tool", "build_schema", "parse_docstring"]
