"""What a decoded JSON value means as a tool call: the shapes models write ({"name", "arguments"}, "parameters"
instead of "arguments", arguments as a JSON string, the OpenAI wire shape, a {"tool_calls": [...]} wrapper,
arguments flattened next to the name) turned into (name, arguments, id), or into an error that says what is
missing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from keye_agent.formats._lenient_json import decode_values, excerpt

_ARG_KEYS = ("arguments", "parameters", "args", "input")
_META_KEYS = {"name", "id", "type", "function"}
_NAME_OK = re.compile(r"[A-Za-z_][\w.\-:]{0,127}")


@dataclass
class Found:
    """Calls (name, arguments, id or None) and errors, in order of appearance."""

    calls: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def coerce_arguments(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Arguments as a dict, from a dict, None, or a (possibly double-encoded, possibly Python-flavoured) JSON
    string. Returns ``(arguments, None)`` or ``(None, why)``."""
    if raw is None:
        return {}, None
    if isinstance(raw, dict):
        return raw, None
    if isinstance(raw, str):
        if not raw.strip():
            return {}, None
        values, why = decode_values(raw)
        if values is None:
            return None, f"arguments are not valid JSON: {why}"
        if len(values) != 1:
            return None, f"arguments hold {len(values)} JSON values one after another; expected one object"
        value = values[0]
        if isinstance(value, str):  # encoded twice
            return coerce_arguments(value) if value.strip()[:1] == "{" else (None, _not_object(value))
        return (value, None) if isinstance(value, dict) else (None, _not_object(value))
    return None, _not_object(raw)


def _not_object(value: Any) -> str:
    return f"arguments must be a JSON object, got {_json_type(value)} {excerpt(str(value), 40)}"


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def add_values(values: list[Any], label: str, found: Found) -> None:
    for value in values:
        if isinstance(value, list):
            if not value:
                found.errors.append(f"{label} holds an empty list: no call in it")
            for item in value:
                add_call(item, label, found)
        else:
            add_call(value, label, found)


def add_call(value: Any, label: str, found: Found) -> None:
    """One decoded value -> one call, or one error naming what is missing."""
    if not isinstance(value, dict):
        found.errors.append(
            f'{label}: expected an object with "name" and "arguments", got {_json_type(value)} '
            f"{excerpt(str(value), 40)}"
        )
        return
    if "name" not in value and isinstance(value.get("tool_calls"), list):  # {"tool_calls": [call, ...]}
        if not value["tool_calls"]:
            found.errors.append(f'{label} holds an empty "tool_calls" list: no call in it')
        for item in value["tool_calls"]:
            add_call(item, label, found)
        return
    fn = value
    if "name" not in value and isinstance(value.get("function"), dict):
        fn = value["function"]  # the OpenAI wire shape {"type": "function", "function": {...}}
    name = fn.get("name")
    if name is None and isinstance(value.get("function"), str):
        name = value["function"]
    if not isinstance(name, str) or not name.strip():
        found.errors.append(f'{label}: no "name" string in the call (keys: {", ".join(map(str, value)) or "none"})')
        return
    name = name.strip()
    arg_key = next((k for k in _ARG_KEYS if k in fn), None)
    if arg_key is None:
        # no "arguments": small models flatten them next to "name"; the tool's schema still checks them
        arguments: dict[str, Any] | None = {k: v for k, v in fn.items() if k not in _META_KEYS}
    else:
        arguments, why = coerce_arguments(fn[arg_key])
        if arguments is None:
            found.errors.append(f"{label}: call to {name!r}: {why}")
            return
    call_id = value.get("id") if isinstance(value.get("id"), str) else None
    found.calls.append((name, arguments, call_id))


def looks_like_call(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    fn = value.get("function") if isinstance(value.get("function"), dict) else value
    name = fn.get("name")
    has_args = any(k in fn for k in ("arguments", "parameters"))
    return isinstance(name, str) and bool(_NAME_OK.fullmatch(name)) and has_args
