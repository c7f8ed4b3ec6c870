"""The JSON Schema of YAML tool registries (shipped as ``registry_schema.json``) and readable errors from it."""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from keye_agent.errors import ConfigError

from .yaml_source import SourceMap

__all__ = ["registry_json_schema", "schema_errors"]


@cache
def registry_json_schema() -> dict[str, Any]:
    """The registry format as a JSON Schema (draft 2020-12); point an editor's YAML plugin at it."""
    text = resources.files("keye_agent.tools").joinpath("registry_schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(registry_json_schema())


def _where(path: tuple[Any, ...]) -> str:
    if not path:
        return "the top level"
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _leaves(err: ValidationError) -> list[ValidationError]:
    """The innermost errors: an if/then or $ref failure is reported by what failed inside it."""
    if err.context and err.validator not in ("oneOf", "anyOf"):
        return [leaf for sub in err.context for leaf in _leaves(sub)]
    return [err]


def _describe(err: ValidationError, data: Any) -> tuple[str, tuple[Any, ...], bool, str | None]:
    """(message, path to point at, point at the key rather than the value, hint)."""
    path = tuple(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    where = _where(path)
    if err.validator == "additionalProperties":
        allowed = sorted(schema.get("properties") or {})
        instance = err.instance if isinstance(err.instance, dict) else {}
        extras = [k for k in instance if k not in allowed]
        key = extras[0] if extras else "?"
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else None
        return (f"unknown key {key!r} in {where}; expected one of: {', '.join(allowed)}", (*path, key), True, hint)
    if err.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        name = missing[0] if missing else err.message
        return f"{where} is missing the required key {name!r}", path, False, None
    if err.validator == "enum":
        options = [str(o) for o in err.validator_value]
        got = err.instance
        close = difflib.get_close_matches(str(got), options, n=1, cutoff=0.5) if isinstance(got, str) else []
        hint = f"did you mean {close[0]!r}?" if close else None
        return f"{where} is {got!r}; expected one of: {', '.join(options)}", path, False, hint
    if err.validator == "const":
        return f"{where} is {err.instance!r}; expected {err.validator_value!r}", path, False, None
    if err.validator == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        art = "an" if str(want)[:1] in "aeiou" else "a"
        return (f"{where} is {type(err.instance).__name__} {err.instance!r}; expected {art} {want}", path, False,
                "quote strings that look like numbers or booleans" if want == "string" else None)
    if err.validator == "oneOf" and set(map(str, schema.get("oneOf", [{}])[0].get("required", []))) & {"url"}:
        return f"{where} needs exactly one of 'url' (a full URL) or 'path' (joined to base_url)", path, False, None
    if err.validator == "pattern":
        desc = {"^/": "a path starting with '/'", "^\\$": "a JSONPath starting with '$'"}.get(err.validator_value)
        expected = desc or f"a string matching {err.validator_value}"
        return f"{where} is {err.instance!r}; expected {expected}", path, False, None
    if err.validator in ("minimum", "exclusiveMinimum", "maximum", "minItems", "minLength"):
        return f"{where}: {err.message}", path, False, None
    return f"{where}: {err.message}", path, False, None


@cache
def _fast() -> tuple[Any, Any] | None:
    """(a validator of whole files, one of single tools) from jsonschema-rs, which says only valid or not, about
    a hundred times faster; None where it is not installed."""
    try:
        import jsonschema_rs
    except ImportError:
        return None
    schema = registry_json_schema()
    one_tool = {"$defs": schema["$defs"], "$ref": "#/$defs/tool"}
    return jsonschema_rs.Draft202012Validator(schema), jsonschema_rs.Draft202012Validator(one_tool)


@cache
def _tool_validator() -> Draft202012Validator:
    schema = registry_json_schema()
    return Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/tool"})


def _violations(data: Any) -> list[ValidationError]:
    """jsonschema's errors (paths from the document's root), found fast: a file jsonschema-rs accepts has none;
    otherwise only the top level and the tools it rejects are explained by jsonschema (a 10 MB file of 40,000
    tools is checked in a fraction of a second, not a minute)."""
    fast = _fast()
    if fast is None:
        return list(_validator().iter_errors(data))
    whole, one = fast
    if whole.is_valid(data):
        return []
    tools = data.get("tools") if isinstance(data, dict) else None
    if not isinstance(tools, list):
        return list(_validator().iter_errors(data))
    errors = list(_validator().iter_errors({**data, "tools": []}))
    for i, t in enumerate(tools):
        if one.is_valid(t):
            continue
        for err in _tool_validator().iter_errors(t):
            err.path.extendleft((i, "tools"))  # relative to the tool -> from the root
            errors.append(err)
    return errors


def schema_errors(data: Any, smap: SourceMap) -> list[ConfigError]:
    """Every schema violation of ``data`` as a ConfigError with its position, in file order."""
    found: list[tuple[tuple[int, int], ConfigError]] = []
    seen: set[str] = set()
    for err in _violations(data):
        for leaf in _leaves(err):
            msg, path, key, hint = _describe(leaf, data)
            if msg in seen:
                continue
            seen.add(msg)
            e = smap.error(msg, path, key=key, hint=hint)
            found.append(((e.line or 0, e.column or 0), e))
    found.sort(key=lambda t: t[0])
    return [e for _, e in found]
