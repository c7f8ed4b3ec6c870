"""Tool calls and reasoning out of raw model text in the Qwen3/Hermes format.

Keye-VL-2.0 (like Qwen3) answers::

    <think>reasoning</think>
    prose for the user
    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

:func:`parse_tool_calls` takes such text apart and survives what local models really write: code fences inside
or around the tags, prose after the calls, Python dict literals, trailing commas, comments, a dropped or extra
bracket, unclosed tags, arguments given as a JSON string, under ``"parameters"`` or flattened next to the name,
a JSON list of calls (or ``{"tool_calls": [...]}``) in one block, two objects in one block, the XML
``<function=...>`` variant, and a bare call object with no tags at all. A call cut off by the end of the output is
reported, never completed. What it cannot parse it reports in ``errors``, one precise line per block; it never
raises on model output. tests/backends/parser_corpus.py holds the cases, each with the public thread it came from.

    >>> out = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
    >>> out.tool_calls[0].name, out.tool_calls[0].arguments
    ('add', {'a': 1})
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from keye_agent.backends._call_shapes import Found, add_call, add_values, coerce_arguments, looks_like_call
from keye_agent.backends._lenient_json import ScanEnd, decode_prefix, decode_values, excerpt, scan_value_end
from keye_agent.types import ToolCall

__all__ = ["ParsedOutput", "coerce_arguments", "parse_tool_calls"]

OPEN, CLOSE = "<tool_call>", "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_EMPTY_FENCE = re.compile(r"^[ \t]*```[^\n`]*\n(?:[ \t]*\n)*[ \t]*```[ \t]*(?:\n|$)", re.M)
_XML_FUNC = re.compile(r"<function=([^>\n]+)>")
_XML_PARAM = re.compile(r"<parameter=([^>\n]+)>(.*?)</parameter>", re.S)
_FUNC_TAG = re.compile(r"<function>\s*([^<\s]+)\s*</function>")


@dataclass(frozen=True)
class ParsedOutput:
    """What :func:`parse_tool_calls` found: the prose left for the user, the reasoning, the calls and the errors."""

    text: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_tool_calls(text: str, *, allow_untagged: bool = True) -> ParsedOutput:
    """Split raw model output into prose, reasoning and tool calls.

    Call ids are kept when the model gives them and are otherwise ``call_0``, ``call_1``... in order.
    ``allow_untagged`` lets an output that is exactly one JSON call object (or a list of them), optionally in
    a code fence, count as a call; pass False when no tools were offered, so a JSON answer stays an answer.
    """
    reasoning, body = _split_reasoning(text)
    found = Found()
    visible = _extract_tagged(body, found)
    if not found.calls and not found.errors and allow_untagged:
        untagged = _untagged_calls(visible)
        if untagged is not None:
            for value in untagged:
                add_call(value, "untagged tool call", found)
            visible = ""
    if not found.calls and not found.errors and not visible and reasoning and OPEN in reasoning:
        found.errors.append(
            "the only <tool_call> is inside <think>...</think> and the answer is empty: tool calls inside "
            "reasoning are not run; write them after </think>"
        )
    return ParsedOutput(text=visible, reasoning=reasoning, tool_calls=_with_ids(found.calls), errors=found.errors)


def _split_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning, rest). Handles ``<think>...</think>``, an unclosed ``<think>`` (ended by the first tool call,
    as Qwen3.5 does when it forgets ``</think>``), and a bare ``</think>`` whose ``<think>`` was in the prompt."""
    open_at = text.find(THINK_OPEN)
    if open_at >= 0 and not text[:open_at].strip():
        start = open_at + len(THINK_OPEN)
        close_at = text.find(THINK_CLOSE, start)
        if close_at >= 0:
            return _nonempty(text[start:close_at]), text[close_at + len(THINK_CLOSE) :]
        call_at = text.find(OPEN, start)
        if call_at >= 0:
            return _nonempty(text[start:call_at]), text[call_at:]
        return _nonempty(text[start:]), ""
    close_at = text.find(THINK_CLOSE)
    call_at = text.find(OPEN)
    if close_at >= 0 and (open_at < 0 or open_at > close_at) and (call_at < 0 or close_at < call_at):
        return _nonempty(text[:close_at]), text[close_at + len(THINK_CLOSE) :]
    return None, text


def _nonempty(s: str) -> str | None:
    s = s.strip()
    return s or None


def _fence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each Markdown code fence; an unclosed fence runs to the end."""
    spans: list[tuple[int, int]] = []
    open_at: int | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            if open_at is None:
                open_at = offset
            else:
                spans.append((open_at, offset + len(line)))
                open_at = None
        offset += len(line)
    if open_at is not None:
        spans.append((open_at, len(text)))
    return spans


def _is_example(text: str, at: int, fences: list[tuple[int, int]]) -> bool:
    """A ``<tool_call>`` shown rather than made: in inline code, or in a fence that prose follows."""
    if at > 0 and text[at - 1] == "`":
        return True
    for start, end in fences:
        if start <= at < end:
            after = text[end:].lstrip()
            return bool(after) and not after.startswith((OPEN, "```"))
    return False


def _extract_tagged(body: str, found: Found) -> str:
    """Parse every ``<tool_call>`` block into ``found``; return the text around them."""
    fences = _fence_spans(body) if "```" in body else []
    segments: list[str] = []
    pos = 0
    block_no = 0
    at = body.find(OPEN)
    while at >= 0:
        if _is_example(body, at, fences):
            at = body.find(OPEN, at + len(OPEN))
            continue
        block_no += 1
        segments.append(body[pos:at])
        pos = _parse_block(body, at + len(OPEN), f"<tool_call> block {block_no}", found)
        at = body.find(OPEN, pos)
    segments.append(body[pos:])
    return _join_visible(segments)


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t\r\n":
        i += 1
    return i


def _skip_fence_line(s: str, i: int) -> int:
    """Past a fence marker line (```json) at ``i``, if there is one."""
    if s.startswith("```", i):
        nl = s.find("\n", i)
        return len(s) if nl < 0 else nl + 1
    return i


def _parse_block(body: str, start: int, label: str, found: Found) -> int:
    """Parse the block whose content starts at ``start``; return where the block ends."""
    n = len(body)
    j = _skip_ws(body, _skip_fence_line(body, _skip_ws(body, start)))
    next_open = body.find(OPEN, j)
    close_at = body.find(CLOSE, j)
    if j == next_open:
        return j  # a doubled opener: the next block holds the call
    if j >= n or body.startswith(CLOSE, j):
        found.errors.append(f"{label} is empty: expected a JSON object with \"name\" and \"arguments\"")
        return j + len(CLOSE) if body.startswith(CLOSE, j) else j
    if body[j] not in "{[":
        end = min(x for x in (close_at, next_open, n) if x >= 0)
        _parse_non_json(body[j:end], label, found)
        return end + len(CLOSE) if end == close_at else end
    values: list[Any] = []
    while True:
        fast = decode_prefix(body, j)
        if fast is not None:
            values.append(fast[0])
            j = fast[1]
        else:
            j, block_done = _slow_value(body, j, close_at, next_open, label, values, found)
            if block_done:
                return j
        j = _skip_ws(body, j)
        while j < n and body[j] in "}]":  # a stray extra closing bracket: harmless, skip it
            j = _skip_ws(body, j + 1)
        j = _skip_ws(body, _skip_fence_line(body, j))
        if j < n and body[j] in "{[":
            continue  # two objects in one block
        break
    add_values(values, label, found)
    return j + len(CLOSE) if body.startswith(CLOSE, j) else j


def _slow_value(
    body: str, j: int, close_at: int, next_open: int, label: str, values: list[Any], found: Found
) -> tuple[int, bool]:
    """Almost-JSON at ``j``: find its end by scanning and decode it leniently. Returns (where it ends, False),
    or (where the block ends, True) when the value never closes and the block was settled here."""
    scan = scan_value_end(body, j)
    if scan.end is not None and close_at >= 0 and scan.end > close_at and 0 <= next_open < scan.end:
        scan = ScanEnd(None, "the value runs into the next <tool_call> block")  # a brace was left open
    if scan.end is None:
        return _unterminated(body, j, close_at, next_open, scan, label, values, found), True
    decoded, why = decode_values(body[j : scan.end])
    if decoded is None:
        found.errors.append(f"{label}: {why}; the block starts {excerpt(body[j:], 50)}")
    else:
        values.extend(decoded)
    return scan.end, False


def _unterminated(
    body: str, j: int, close_at: int, next_open: int, scan: ScanEnd, label: str, values: list[Any], found: Found
) -> int:
    """A JSON value that does not close. With ``</tool_call>`` after it the model finished the call and dropped a
    bracket, so close it; without, the output was cut off, and running half a call would be wrong."""
    end = min(x for x in (close_at, next_open) if x >= 0) if max(close_at, next_open) >= 0 else -1
    if close_at >= 0 and end == close_at:
        chunk = body[j:close_at].rstrip()
        if chunk.endswith("```"):
            chunk = chunk[:-3]
        decoded, why = decode_values(chunk + scan.closers) if scan.closers else (None, scan.state)
        if decoded is not None:
            add_values(values + decoded, label, found)
        else:
            found.errors.append(f"{label}: the JSON value does not close ({scan.state}): {why}; "
                                f"the block starts {excerpt(chunk, 50)}")
            add_values(values, label, found)
        return close_at + len(CLOSE)
    stop = end if end >= 0 else len(body)
    found.errors.append(
        f"{label} is cut off: {scan.state} when the output ends (did generation hit max_tokens?); "
        f"the block starts {excerpt(body[j:stop], 50)}"
    )
    add_values(values, label, found)
    return stop


def _parse_non_json(chunk: str, label: str, found: Found) -> None:
    """The XML variants of Qwen3-Coder/Qwen3.5 (``<function=NAME><parameter=K>V</parameter>``) and
    ``<function>NAME</function>{args}``; anything else is an error quoting the block."""
    m = _XML_FUNC.search(chunk)
    if m:
        args: dict[str, Any] = {}
        for key, raw in _XML_PARAM.findall(chunk):
            value = raw.removeprefix("\n").removesuffix("\n")
            if value.lstrip()[:1] in ("{", "["):  # structured values are JSON; scalars stay strings
                decoded, _ = decode_values(value)
                if decoded is not None and len(decoded) == 1:
                    args[key.strip()] = decoded[0]
                    continue
            args[key.strip()] = value
        found.calls.append((m.group(1).strip(), args, None))
        return
    m = _FUNC_TAG.match(chunk.strip())
    if m:
        rest = chunk.strip()[m.end() :].strip()
        arguments, why = coerce_arguments(rest if rest else None)
        if arguments is None:
            found.errors.append(f"{label}: call to {m.group(1)!r}: {why}")
        else:
            found.calls.append((m.group(1), arguments, None))
        return
    if "<parameter=" in chunk:
        found.errors.append(
            f"{label} has <parameter=...> but no <function=NAME>: the tool name goes in <function=NAME>, "
            f"the arguments in <parameter=KEY> tags inside it; it starts {excerpt(chunk, 50)}"
        )
        return
    found.errors.append(
        f"{label} does not contain a JSON object; it starts {excerpt(chunk, 50)}. "
        'Expected {"name": "<tool name>", "arguments": {...}}'
    )


def _untagged_calls(visible: str) -> list[Any] | None:
    """The calls of an output that is exactly one JSON call object or list of them (maybe fenced), else None.

    Strict on purpose: the whole output must be the value, and every item must look like a call (a name that is
    an identifier, plus an arguments key), so prose or an ordinary JSON answer never becomes a call."""
    s = visible.strip()
    if s.startswith("```") and s.endswith("```") and s.count("```") == 2:
        s = s[s.find("\n") + 1 : -3].strip() if "\n" in s else ""
    if not s or s[0] not in "{[":
        return None
    fast = decode_prefix(s, 0)
    if fast is not None:
        if fast[1] != len(s):
            return None
        values: list[Any] | None = [fast[0]]
    else:
        if scan_value_end(s, 0).end != len(s):
            return None
        values, _ = decode_values(s)
        if values is None or len(values) != 1:
            return None
    value = values[0]
    if isinstance(value, dict) and "name" not in value and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]  # {"tool_calls": [call, ...]}
    items = value if isinstance(value, list) else [value]
    return items if items and all(looks_like_call(v) for v in items) else None


def _join_visible(segments: list[str]) -> str:
    """The prose around the calls: orphan closing tags and emptied code fences removed."""
    kept: list[str] = []
    for seg in segments:
        if CLOSE in seg and OPEN not in seg:
            seg = seg.replace(CLOSE, "")
        if seg.strip():
            kept.append(seg)
    text = "\n\n".join(s.strip("\n") for s in kept) if len(kept) > 1 else (kept[0] if kept else "")
    if "```" in text:
        text = _EMPTY_FENCE.sub("", text)
        if text.strip().startswith("```") and text.strip().count("```") == 1 and "\n" not in text.strip():
            text = ""
    return text.strip()


def _with_ids(calls: list[tuple[str, dict[str, Any], str | None]]) -> list[ToolCall]:
    out: list[ToolCall] = []
    seen: set[str] = set()
    for i, (name, arguments, call_id) in enumerate(calls):
        if not call_id or call_id in seen:
            call_id = f"call_{i}"
        seen.add(call_id)
        out.append(ToolCall(id=call_id, name=name, arguments=arguments))
    return out
