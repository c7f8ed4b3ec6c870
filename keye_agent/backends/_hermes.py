"""The Hermes/Qwen3 tool-call format for local models: rendering a conversation whose chat template knows nothing
of tools, and splitting a raw token stream into prose, reasoning and (hidden) tool-call text.

Used by the transformers backend; any local backend whose model writes ``<tool_call>`` blocks can reuse it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from keye_agent.errors import ConfigError
from keye_agent.types import Message, TextPart

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

TOOLS_PREAMBLE = (
    "# Tools\n\n"
    "You can call the functions described inside <tools></tools> below, one JSON object per line:\n"
    "<tools>\n{tools}\n</tools>\n\n"
    "To call a function, write its name and arguments as JSON inside <tool_call></tool_call> tags:\n"
    "<tool_call>\n"
    '{{"name": "function_name", "arguments": {{"argument_name": "value"}}}}\n'
    "</tool_call>\n"
    "Results come back inside <tool_response></tool_response> tags."
)


def message_text(m: Message, backend: str) -> str:
    """The text of a message; images and videos are refused (a text-only model would silently ignore them)."""
    if m.content is None or isinstance(m.content, str):
        return m.content or ""
    if any(not isinstance(p, TextPart) for p in m.content):
        raise ConfigError(f"{backend} is a text-only model and cannot read the image or video in a {m.role} message",
                          hint="use the Keye backend or an OpenAI-compatible vision model for images")
    return m.text


def render_call(name: str, arguments: dict[str, Any]) -> str:
    return f"{CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{CALL_CLOSE}"


def tools_block(tools: Sequence[dict[str, Any]]) -> str:
    lines = [json.dumps(t.get("function", t), ensure_ascii=False) for t in tools]
    return TOOLS_PREAMBLE.format(tools="\n".join(lines))


def hermes_messages(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
                    backend: str) -> list[dict[str, str]]:
    """Plain role/content messages for a chat template without tool support: the tool list goes into the system
    turn, assistant calls become ``<tool_call>`` blocks and tool results ``<tool_response>`` blocks in a user turn
    (consecutive results share one turn, as Qwen3's own template does)."""
    out: list[dict[str, str]] = []
    rest = list(messages)
    system = ""
    if rest and rest[0].role == "system":
        system = message_text(rest.pop(0), backend)
    if tools:
        system = (system + "\n\n" if system else "") + tools_block(tools)
    if system:
        out.append({"role": "system", "content": system})
    for m in rest:
        text = message_text(m, backend)
        if m.role == "assistant":
            calls = [render_call(c.name, c.arguments) for c in m.tool_calls or ()]
            out.append({"role": "assistant", "content": "\n".join(([text] if text else []) + calls)})
        elif m.role == "tool":
            block = f"<tool_response>\n{text}\n</tool_response>"
            if out and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
        else:
            out.append({"role": m.role, "content": text})
    for d in out:
        d.pop("_tool", None)
    return out


def native_messages(messages: Sequence[Message], backend: str) -> list[dict[str, Any]]:
    """OpenAI-shaped dicts for a chat template that renders tools itself (Qwen3's, say)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": message_text(m, backend)}
        if m.tool_calls:
            d["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                               for c in m.tool_calls]
        if m.role == "tool":
            d["tool_call_id"] = m.tool_call_id
            d["name"] = m.name
        out.append(d)
    return out


class StreamSplitter:
    """Turns raw text deltas into ("text" | "reasoning", delta) pieces, hiding ``<tool_call>`` blocks (they reach
    the user as parsed calls, not as JSON). A tail that could still become a tag is held back until it cannot.

    >>> s = StreamSplitter()
    >>> s.feed("Hi <tool") + s.feed('_call>{"a": 1}</tool_call> bye') + s.flush()
    [('text', 'Hi '), ('text', ' bye')]
    """

    def __init__(self, *, in_reasoning: bool = False) -> None:
        self._state = "reasoning" if in_reasoning else "text"
        self._buf = ""

    def _markers(self) -> dict[str, str]:
        if self._state == "text":
            return {CALL_OPEN: "call", THINK_OPEN: "reasoning"}
        if self._state == "reasoning":
            return {THINK_CLOSE: "text"}
        return {CALL_CLOSE: "text"}

    def feed(self, delta: str) -> list[tuple[str, str]]:
        self._buf += delta
        out: list[tuple[str, str]] = []
        while True:
            markers = self._markers()
            hits = [(self._buf.find(m), m) for m in markers if m in self._buf]
            if hits:
                at, marker = min(hits)
                self._emit(self._buf[:at], out)
                self._buf = self._buf[at + len(marker):]
                self._state = markers[marker]
                continue
            keep = max((k for m in markers for k in range(1, len(m)) if self._buf.endswith(m[:k])), default=0)
            self._emit(self._buf[:len(self._buf) - keep], out)
            self._buf = self._buf[len(self._buf) - keep:]
            return out

    def flush(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self._emit(self._buf, out)
        self._buf = ""
        return out

    def _emit(self, text: str, out: list[tuple[str, str]]) -> None:
        if text and self._state != "call":
            out.append((self._state, text))
