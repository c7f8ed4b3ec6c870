"""Tool calls and reasoning out of raw model text in the Qwen3/Hermes format, as typed calls.

The parsing itself lives in :mod:`keye_agent.formats.hermes` (plain Python, shared with the model package); this
module wraps its result into :class:`~keye_agent.types.ToolCall` objects for backends and users.

    >>> out = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
    >>> out.tool_calls[0].name, out.tool_calls[0].arguments
    ('add', {'a': 1})
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keye_agent.formats import hermes
from keye_agent.formats.hermes import CALL_CLOSE as CLOSE
from keye_agent.formats.hermes import CALL_OPEN as OPEN
from keye_agent.formats.hermes import THINK_CLOSE, THINK_OPEN, coerce_arguments
from keye_agent.types import ToolCall

__all__ = ["CLOSE", "OPEN", "THINK_CLOSE", "THINK_OPEN", "ParsedOutput", "coerce_arguments", "parse_tool_calls"]


@dataclass(frozen=True)
class ParsedOutput:
    """What :func:`parse_tool_calls` found: the prose left for the user, the reasoning, the calls and the errors."""

    text: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_tool_calls(text: str, *, allow_untagged: bool = True) -> ParsedOutput:
    """Split raw model output into prose, reasoning and tool calls (see :func:`keye_agent.formats.hermes.parse`).

    Call ids are kept when the model gives them and are otherwise ``call_0``, ``call_1``... in order.
    ``allow_untagged`` lets an output that is exactly one JSON call object (or a list of them), optionally in
    a code fence, count as a call; pass False when no tools were offered, so a JSON answer stays an answer.
    Raises :class:`~keye_agent.errors.ModelOutputError` past ``hermes.MAX_OUTPUT_CHARS`` characters of markup.
    """
    out = hermes.parse(text, allow_untagged=allow_untagged)
    calls = [ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in out.calls]
    return ParsedOutput(text=out.text, reasoning=out.reasoning, tool_calls=calls, errors=out.errors)
