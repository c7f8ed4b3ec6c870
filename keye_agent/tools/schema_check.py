"""Checking a tool's parameters schema when the tool is defined: a valid JSON Schema, and values that agree with
it (a default of the declared type, inside its enum and bounds; bounds that leave some value possible).

A schema can be valid and still unusable: ``{"type": "integer", "default": "ten"}`` or ``minimum: 10, maximum: 1``
pass the metaschema, and the model would be shown a default it must not send, or a range nothing fits.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from keye_agent.errors import ToolDefinitionError

__all__ = ["check_parameters"]

_BOUNDS = (("minimum", "maximum"), ("exclusiveMinimum", "exclusiveMaximum"), ("minimum", "exclusiveMaximum"),
           ("exclusiveMinimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems"),
           ("minProperties", "maxProperties"))
_CHECKED = frozenset({"default", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                      "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"})
_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
_SUBSCHEMAS = ("items", "additionalProperties", "not", "contains", "propertyNames")


@cache
def _rs_meta() -> Any:
    try:
        import jsonschema_rs
    except ImportError:
        return None
    return jsonschema_rs.meta


def _meta_check(name: str, schema: dict[str, Any]) -> None:
    meta = _rs_meta()
    if meta is not None:
        try:
            if meta.is_valid(schema):  # the common case, in microseconds (a registry of 50,000 tools)
                return
        except Exception:  # noqa: BLE001 - a schema it cannot read: jsonschema below gives the message
            pass
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        hint = None
        if e.path and e.path[-1] == "type" and isinstance(e.instance, str):
            close = difflib.get_close_matches(e.instance, _TYPES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            hint += f"a JSON Schema type is one of: {', '.join(_TYPES)}"
        raise ToolDefinitionError(f"tool {name!r}: parameters are not a valid JSON Schema: {e.message}",
                                  schema_path=tuple(e.path), hint=hint) from None


def _subschemas(schema: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[tuple[dict[str, Any], tuple]]:
    yield schema, path
    for key in ("properties", "$defs", "patternProperties"):
        children = schema.get(key)
        if isinstance(children, dict):
            for k, sub in children.items():
                if isinstance(sub, dict):
                    yield from _subschemas(sub, (*path, key, k))
    for key in _SUBSCHEMAS:
        if isinstance(schema.get(key), dict):
            yield from _subschemas(schema[key], (*path, key))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                if isinstance(sub, dict):
                    yield from _subschemas(sub, (*path, key, i))


def _where(path: tuple[str | int, ...]) -> str:
    names = [str(p) for i, p in enumerate(path) if i > 0 and path[i - 1] == "properties"]
    return f"argument {'.'.join(names)!r}" if names else "the parameters schema"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_values(name: str, schema: dict[str, Any], path: tuple[str | int, ...]) -> None:
    if _CHECKED.isdisjoint(schema) or "$ref" in schema or "$dynamicRef" in schema:
        return  # nothing to compare; or its meaning is elsewhere in the document (the metaschema check applies)
    where = _where(path)
    for low, high in _BOUNDS:
        lo, hi = schema.get(low), schema.get(high)
        if _number(lo) and _number(hi) and (lo > hi or (lo == hi and (low.startswith("exclusive")
                                                                      or high.startswith("exclusive")))):
            raise ToolDefinitionError(f"tool {name!r}: {where} has {low}: {lo} and {high}: {hi}, so no value fits",
                                      schema_path=(*path, low), hint=f"swap them, or set {low} <= {high}")
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        if isinstance(schema.get(key), float) and not math.isfinite(schema[key]):
            raise ToolDefinitionError(f"tool {name!r}: {where} has {key}: {schema[key]}; bounds must be finite numbers",
                                      schema_path=(*path, key))
    if "enum" in schema and isinstance(schema["enum"], list):
        rest = {k: v for k, v in schema.items() if k not in ("enum", "default", "examples")}
        bad = [v for v in schema["enum"] if not Draft202012Validator(rest).is_valid(v)]
        if bad:
            raise ToolDefinitionError(f"tool {name!r}: {where} lists {bad[0]!r} in its enum, which its own schema "
                                      f"refuses ({_kind(schema)})", schema_path=(*path, "enum"),
                                      hint="make every enum value match the type and bounds")
    if "default" in schema:
        default = schema["default"]
        rest = {k: v for k, v in schema.items() if k not in ("default", "examples")}
        errors = sorted(Draft202012Validator(rest).iter_errors(default), key=lambda e: e.path)
        if errors:
            if "enum" in schema and errors[0].validator == "enum":
                why = f"not one of its enum values {schema['enum']}"
                hint = f"use one of {schema['enum']} as the default, or add {default!r} to the enum"
            else:
                why = errors[0].message
                hint = f"give a default that is {_kind(schema)}, or remove it"
            raise ToolDefinitionError(f"tool {name!r}: {where} has default {default!r}: {why}",
                                      schema_path=(*path, "default"), hint=hint)


def _kind(schema: dict[str, Any]) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        return "a " + " or ".join(map(str, t))
    return f"a{'n' if str(t)[:1] in 'aeiou' else ''} {t}" if t else "valid under the schema"


def check_parameters(name: str, parameters: dict[str, Any]) -> None:
    """Raise :class:`ToolDefinitionError` (with ``schema_path``) for a parameters schema that is not a valid JSON
    Schema, or whose defaults, enums and bounds contradict it."""
    _meta_check(name, parameters)
    for schema, path in _subschemas(parameters, ()):
        _check_values(name, schema, path)
