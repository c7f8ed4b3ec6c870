"""The Qwen3/Hermes tool-call format, in one place: the markup, the tools preamble, how calls and results are
written, how they are read back (:func:`parse`), the streaming split of reasoning, text and calls
(:class:`StreamSplitter`), and the structural tags that hold a grammar-constrained model to it
(:func:`structural_tag`).

Keye-VL-2.0 uses the Qwen3 chat template: tools go into the system turn inside ``<tools></tools>``, one JSON
object per line; the model answers ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` (several
allowed); results come back in a user turn as ``<tool_response>...</tool_response>``; reasoning sits in
``<think>...</think>``. Plain Python over dicts and strings: ``keye_agent.model`` renders with it, backends wrap
what :func:`parse` returns into typed calls.

    >>> out = parse('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
    >>> out.calls[0].name, out.calls[0].arguments
    ('add', {'a': 1})
    >>> render_call("add", {"a": 1})
    '<tool_call>\\n{"name": "add", "arguments": {"a": 1}}\\n</tool_call>'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from keye_agent.errors import ConfigError
from keye_agent.formats._call_shapes import coerce_arguments
from keye_agent.formats._hermes_parse import MAX_OUTPUT_CHARS, Call, Parsed, parse
from keye_agent.formats._hermes_stream import StreamSplitter
from keye_agent.formats._hermes_tags import (
    CALL_CLOSE,
    CALL_OPEN,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
)
from keye_agent.formats._lenient_json import MAX_LENIENT_CHARS, decode_values

__all__ = [
    "CALL_CLOSE", "CALL_OPEN", "CALL_SUFFIX", "HERMES", "MAX_JSON_WHITESPACE", "MAX_LENIENT_CHARS", "MAX_OUTPUT_CHARS",
    "RESPONSE_CLOSE", "RESPONSE_OPEN", "THINK_CLOSE", "THINK_OPEN", "Call", "HermesFormat", "Parsed",
    "StreamSplitter", "call_prefix", "coerce_arguments", "decode_values", "function_of", "parse", "plain_chat",
    "render_call", "render_response", "structural_tag", "tools_block",
]

TOOLS_HEAD = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
              "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_TAIL = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
              "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
              "<args-json-object>}\n</tool_call>")
CALL_SUFFIX = "}\n" + CALL_CLOSE
"""What follows a call's arguments object."""
MAX_JSON_WHITESPACE = 1
"""At most one whitespace character between JSON tokens under a grammar: single-line JSON as Qwen3 writes it;
pretty-printing and runs of newlines would only spend the token budget (small models otherwise fill max_tokens)."""


def _tojson(value: Any) -> str:
    # The Hugging Face `tojson` filter: non-ASCII kept, default separators.
    return json.dumps(value, ensure_ascii=False)


def tools_block(tools: Sequence[Mapping[str, Any]]) -> str:
    """The tools preamble of the system turn, as Qwen3's template writes it: one tool schema per line."""
    return TOOLS_HEAD + "".join("\n" + _tojson(t) for t in tools) + TOOLS_TAIL


def call_prefix(name: str) -> str:
    """A call's text up to its arguments object (a grammar holds the name to this fixed text)."""
    return CALL_OPEN + '\n{"name": ' + _tojson(name) + ', "arguments": '


def render_call(name: str, arguments: Mapping[str, Any] | str) -> str:
    """One call as the model writes it; ``arguments`` as an object or as JSON text (kept verbatim)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a tool call needs a non-empty name, got {name!r}")
    args = arguments if isinstance(arguments, str) else _tojson(arguments)
    return call_prefix(name) + args + CALL_SUFFIX


def render_response(content: str) -> str:
    """One tool result as the model reads it."""
    return f"{RESPONSE_OPEN}\n{content}\n{RESPONSE_CLOSE}"


def plain_chat(messages: Sequence[Mapping[str, Any]],
               tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    """Plain role/content messages for a chat template that knows nothing of tools. ``messages`` are OpenAI-shaped
    dicts with text content; the tool list goes into the system turn, assistant calls become ``<tool_call>``
    blocks and tool results ``<tool_response>`` blocks in a user turn (consecutive results share one turn, as
    Qwen3's own template does)."""
    out: list[dict[str, str]] = []
    rest = list(messages)
    system = ""
    if rest and rest[0].get("role") == "system":
        system = rest.pop(0).get("content") or ""
    if tools:
        system = (system + "\n\n" if system else "") + tools_block(tools)
    if system:
        out.append({"role": "system", "content": system})
    merged_tool_turn = False
    for m in rest:
        role, text = m["role"], m.get("content") or ""
        if role == "assistant":
            calls = [render_call(c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls") or ()]
            out.append({"role": "assistant", "content": "\n".join(([text] if text else []) + calls)})
        elif role == "tool":
            if merged_tool_turn:
                out[-1]["content"] += "\n" + render_response(text)
            else:
                out.append({"role": "user", "content": render_response(text)})
            merged_tool_turn = True
            continue
        else:
            out.append({"role": role, "content": text})
        merged_tool_turn = False
    return out


def function_of(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``function`` part of an OpenAI tool schema (or the schema itself when it is already bare)."""
    fn = schema.get("function", schema)
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise ConfigError(f"not an OpenAI function schema (no function name): {json.dumps(schema)[:120]}")
    return fn


def _call_tag(fn: Mapping[str, Any]) -> dict[str, Any]:
    # the name is part of the fixed text, so only registered names can be written
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    return {"type": "tag", "begin": call_prefix(fn["name"]), "end": CALL_SUFFIX,
            "content": {"type": "json_schema", "json_schema": params, "max_whitespace_cnt": MAX_JSON_WHITESPACE}}


def structural_tag(tools: Sequence[Mapping[str, Any]] | None, tool_choice: str = "auto", *,
                   allow_reasoning: bool = False, parallel: bool = True) -> dict[str, Any] | None:
    """The xgrammar structural tag (its JSON form) for ``tools`` (OpenAI format) under ``tool_choice``; None when
    nothing is constrained.

    - ``"auto"``: free text, and any number of calls; a call starts only when the model writes ``<tool_call>``.
    - ``"required"``: one or more calls and nothing else, from the first token (an optional ``<think>`` block
      first when ``allow_reasoning`` is set).
    - a tool name: exactly one call of that tool, from the first token.
    - ``"none"``, or no tools with "auto": no grammar at all.

    ``parallel=False`` ends the turn after the first call (OpenAI's ``parallel_tool_calls``): small models
    otherwise tend to repeat the same call until ``max_tokens``. Raises :class:`ConfigError` for a
    ``tool_choice`` naming no offered tool, or "required" with no tools.
    """
    fns = [function_of(t) for t in tools or ()]
    if tool_choice == "none":
        return None
    if not fns:
        if tool_choice == "auto":
            return None
        raise ConfigError(f"tool_choice is {tool_choice!r} but no tools were offered",
                          hint="register a tool, or use tool_choice 'auto' or 'none'")
    if tool_choice == "auto":
        return {"type": "structural_tag", "format": {
            "type": "triggered_tags", "triggers": [CALL_OPEN], "tags": [_call_tag(f) for f in fns],
            "stop_after_first": not parallel}}
    if tool_choice == "required":
        tags, stop_after_first = [_call_tag(f) for f in fns], not parallel
    else:
        named = [f for f in fns if f["name"] == tool_choice]
        if not named:
            raise ConfigError(
                f"tool_choice names {tool_choice!r}, which is not among the offered tools "
                f"({', '.join(f['name'] for f in fns)})",
                hint="use 'auto', 'required', 'none' or the name of an offered tool",
            )
        tags, stop_after_first = [_call_tag(named[0])], True
    calls = {"type": "tags_with_separator", "tags": tags, "separator": "\n", "at_least_one": True,
             "stop_after_first": stop_after_first}
    if not allow_reasoning:
        return {"type": "structural_tag", "format": calls}
    think = {"type": "optional", "content": {"type": "tag", "begin": THINK_OPEN, "content": {"type": "any_text"},
                                             "end": THINK_CLOSE + "\n\n"}}
    return {"type": "structural_tag", "format": {"type": "sequence", "elements": [think, calls]}}


class HermesFormat:
    """The Hermes format as a backend's ``call_format``: what the agent loop tells a model whose output did not
    parse as a tool call."""

    name = "hermes"

    def how_to_call(self) -> str:
        return ('Write each call as <tool_call>\n{"name": "TOOL_NAME", "arguments": {...}}\n</tool_call> with valid '
                "JSON (double quotes, no trailing commas); or answer in plain text.")

    def __repr__(self) -> str:
        return "HermesFormat()"


HERMES = HermesFormat()
"""The shared instance backends expose as ``call_format``."""
