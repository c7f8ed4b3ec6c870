"""Tool calls and reasoning out of raw model text in the Qwen3/Hermes format, over plain strings and dicts.

Keye-VL-2.0 (like Qwen3) answers::

    <think>reasoning</think>
    prose for the user
    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

:func:`parse` takes such text apart and survives what local models really write: code fences inside or around the
tags, prose after the calls, Python dict literals, trailing commas, comments, a dropped or extra bracket, unclosed
tags, arguments given as a JSON string, under ``"parameters"`` or flattened next to the name, a JSON list of calls
(or ``{"tool_calls": [...]}``) in one block, two objects in one block, the XML ``<function=...>`` variant, and a
bare call object with no tags at all. A call cut off by the end of the output is reported, never completed. What
it cannot parse it reports in ``errors``, one precise line per block; it never raises on model output up to
:data:`MAX_OUTPUT_CHARS`. tests/backends/parser_corpus.py holds the cases, each with the public thread it came from.

Linear in the length of the text: each block is read only up to the next ``<tool_call>`` (a value that does not
close by then is cut off, however the rest of the text goes), and the lenient passes are linear and capped.
Backends wrap the result into typed calls (:func:`keye_agent.backends.parsing.parse_tool_calls`).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from keye_agent.errors import ModelOutputError
from keye_agent.formats._call_shapes import Found, add_call, add_values, coerce_arguments, looks_like_call
from keye_agent.formats._hermes_tags import CALL_CLOSE as CLOSE
from keye_agent.formats._hermes_tags import CALL_OPEN as OPEN
from keye_agent.formats._hermes_tags import THINK_CLOSE, THINK_OPEN
from keye_agent.formats._lenient_json import ScanEnd, decode_prefix, decode_values, excerpt, scan_value_end

__all__ = ["MAX_OUTPUT_CHARS", "Call", "Parsed", "coerce_arguments", "parse"]

MAX_OUTPUT_CHARS = 2_000_000
"""Longest output :func:`parse` reads for calls (about half a million tokens, far past any ``max_tokens``);
a longer one holding call or reasoning markup raises :class:`~keye_agent.errors.ModelOutputError`."""
_NON_WS = re.compile(r"\S")
_EMPTY_FENCE = re.compile(r"^[ \t]*```[^\n`]*\n(?:[ \t]*\n)*[ \t]*```[ \t]*(?:\n|$)", re.M)
_XML_FUNC = re.compile(r"<function=([^>\n]+)>")
_XML_PARAM = re.compile(r"<parameter=([^>\n]+)>(.*?)</parameter>", re.S)
_FUNC_TAG = re.compile(r"<function>\s*([^<\s]+)\s*</function>")


@dataclass(frozen=True)
class Call:
    """One parsed call: its id (the model's, or ``call_N``), the tool name and the arguments object."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Parsed:
    """What :func:`parse` found: the prose left for the user, the reasoning, the calls and the errors."""

    text: str
    reasoning: str | None = None
    calls: list[Call] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse(text: str, *, allow_untagged: bool = True) -> Parsed:
    """Split raw model output into prose, reasoning and tool calls.

    Call ids are kept when the model gives them and are otherwise ``call_0``, ``call_1``... in order.
    ``allow_untagged`` lets an output that is exactly one JSON call object (or a list of them), optionally in
    a code fence, count as a call; pass False when no tools were offered, so a JSON answer stays an answer.
    Raises :class:`~keye_agent.errors.ModelOutputError` for an output longer than :data:`MAX_OUTPUT_CHARS` that
    holds markup to parse (a longer plain answer is returned as text).
    """
    if len(text) > MAX_OUTPUT_CHARS:
        head = text.lstrip()[:1]
        if OPEN not in text and THINK_CLOSE not in text and not (allow_untagged and head in ("{", "[", "`")):
            return Parsed(text=text.strip())
        raise ModelOutputError(
            f"the model output is {len(text):,} characters; the tool-call parser reads at most "
            f"{MAX_OUTPUT_CHARS:,} (keye_agent.formats.hermes.MAX_OUTPUT_CHARS)",
            problems=[f"output of {len(text):,} characters is past the parser's {MAX_OUTPUT_CHARS:,}-character cap; "
                      "lower max_tokens or ask for a shorter answer"],
        )
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
    return Parsed(text=visible, reasoning=reasoning, calls=_with_ids(found.calls), errors=found.errors)


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
    k = bisect.bisect_right(fences, (at, len(text) + 1)) - 1  # the last fence starting at or before ``at``
    if k >= 0 and fences[k][0] <= at < fences[k][1]:
        m = _NON_WS.search(text, fences[k][1])
        return m is not None and not text.startswith((OPEN, "```"), m.start())
    return False


def _extract_tagged(body: str, found: Found) -> str:
    """Parse every ``<tool_call>`` block into ``found``; return the text around them."""
    fences = _fence_spans(body) if "```" in body else []
    blocks = _Blocks(body)
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
        pos = _parse_block(body, at + len(OPEN), f"<tool_call> block {block_no}", found, blocks)
        at = body.find(OPEN, pos)
    segments.append(body[pos:])
    return _join_visible(segments)


class _Blocks:
    """What the blocks of one output share, so the whole parse stays linear in the text:

    - the first ``</tool_call>`` at or after a position, for positions that only grow (each search starts where
      the last one ended: one pass over the text for every block's closer, not one per block);
    - a budget of characters for strict JSON values read past the next ``<tool_call>`` (a string may hold the
      tag); a strict parse is otherwise read from the block's own region, because a JSON error counts the lines
      of everything before it."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._at = -2  # not searched yet
        self.budget = 4 * len(text)

    def strict_value(self, j: int, next_open: int) -> tuple[Any, int] | None:
        """The strict JSON value at ``j``: read up to ``next_open``, then (within the budget) past it."""
        text = self._text
        if next_open < 0:
            return decode_prefix(text, j)
        fast = decode_prefix(text, j, next_open)
        if fast is None and self.budget >= len(text) - j:
            self.budget -= len(text) - j
            fast = decode_prefix(text, j)
        return fast

    def close_after(self, i: int) -> int:
        if self._at == -1 or 0 <= i <= self._at:
            return self._at
        self._at = self._text.find(CLOSE, i)
        return self._at


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


def _parse_block(body: str, start: int, label: str, found: Found, blocks: _Blocks) -> int:
    """Parse the block whose content starts at ``start``; return where the block ends."""
    n = len(body)
    j = _skip_ws(body, _skip_fence_line(body, _skip_ws(body, start)))
    next_open = body.find(OPEN, j)
    close_at = blocks.close_after(j)
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
        if 0 <= next_open < j:  # a strict value held the next <tool_call> in a string
            next_open = body.find(OPEN, j)
        fast = blocks.strict_value(j, next_open)
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
    or (where the block ends, True) when the value never closes and the block was settled here.

    The scan stops at the next ``<tool_call>``: a value still open there runs into the next block (a brace or a
    quote was left open), and reading on would make every block's scan run to the end of the text."""
    scan = scan_value_end(body, j, next_open if next_open >= 0 else None)
    if scan.too_deep:
        found.errors.append(f"{label}: JSON nested too deeply to decode ({scan.state}); "
                            f"the block starts {excerpt(body, 50, j)}")
        ends = [x for x in (close_at, next_open) if x >= 0]
        end = min(ends) if ends else len(body)
        return (end + len(CLOSE) if end == close_at else end), True
    if scan.end is None:
        return _unterminated(body, j, close_at, next_open, scan, label, values, found), True
    decoded, why = decode_values(body[j : scan.end])
    if decoded is None:
        found.errors.append(f"{label}: {why}; the block starts {excerpt(body, 50, j)}")
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
    where = ("where the next <tool_call> begins" if stop == next_open
             else "when the output ends (did generation hit max_tokens?)")
    found.errors.append(
        f"{label} is cut off: {scan.state} {where}; "
        f"the block starts {excerpt(body[j : min(stop, j + 500)], 50)}"
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


def _with_ids(calls: list[tuple[str, dict[str, Any], str | None]]) -> list[Call]:
    out: list[Call] = []
    seen: set[str] = set()
    for i, (name, arguments, call_id) in enumerate(calls):
        if not call_id or call_id in seen:
            call_id = f"call_{i}"
        seen.add(call_id)
        out.append(Call(id=call_id, name=name, arguments=arguments))
    return out
