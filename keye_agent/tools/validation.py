"""Error messages for arguments that fail a tool's schema, and scrubbing of error text."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from jsonschema.exceptions import ValidationError

from keye_agent.errors import redact

if TYPE_CHECKING:
    from .base import Tool

_MAX_SCHEMA_CHARS = 300


def _path(err: ValidationError) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path]
    return "arguments" + "".join(parts)


def _expected(err: ValidationError) -> str:
    schema: Any = err.schema
    if not isinstance(schema, dict):
        return ""
    if err.validator == "required":
        return ""
    if err.validator == "additionalProperties":
        props = sorted((schema.get("properties") or {}).keys())
        return f"allowed properties: {', '.join(props) or 'none'}"
    keep = {k: v for k, v in schema.items() if k not in ("description", "title", "examples", "$defs")}
    text = json.dumps(keep, ensure_ascii=False)
    if len(text) > _MAX_SCHEMA_CHARS:
        text = text[:_MAX_SCHEMA_CHARS] + "..."
    return f"expected {text}"


def format_validation_errors(tool: Tool, errors: list[ValidationError]) -> tuple[str, list[tuple[str, str]]]:
    """One line per failing path: where, what was wrong, and what the schema expects there."""
    problems: list[tuple[str, str]] = []
    lines = []
    for err in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        path = _path(err)
        msg = err.message
        if err.validator == "required":
            missing = msg.split("'")[1] if "'" in msg else msg
            sub = (err.schema.get("properties") or {}).get(missing, {}) if isinstance(err.schema, dict) else {}
            desc = sub.get("description") if isinstance(sub, dict) else None
            msg = f"missing required argument {missing!r}" + (f" ({desc})" if desc else "")
            path = f"{path}.{missing}"
        expected = _expected(err)
        problems.append((path, msg))
        lines.append(f"- {path}: {msg}" + (f"; {expected}" if expected else ""))
    head = f"invalid arguments for tool {tool.name!r} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
    return "\n".join([head, *lines]), problems  # ToolValidationError redacts it


def _host_prefixes() -> list[str]:
    prefixes = {os.getcwd(), os.path.expanduser("~"), sys.prefix, sys.base_prefix, tempfile.gettempdir()}
    return sorted((p for p in prefixes if p and p != "/"), key=len, reverse=True)


_PREFIXES = _host_prefixes()


def sanitize_message(text: str) -> str:
    """Scrub secrets and host paths (working directory, home, interpreter, temp) from an error message."""
    text = redact(text)
    for p in _PREFIXES:
        if p in text:
            text = re.sub(re.escape(p) + r"(/[^\s'\"]*)?", "<path>", text)
    return text
