"""The Hermes/Qwen3 format for local backends, over typed messages: conversations as the dicts a chat template
takes (with tool markup written into the text for a template that knows nothing of tools), images refused by
text-only models. The format itself lives in :mod:`keye_agent.formats.hermes`; its names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keye_agent.errors import ConfigError
from keye_agent.formats.hermes import (
    CALL_CLOSE,
    CALL_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    StreamSplitter,
    plain_chat,
    render_call,
    tools_block,
)
from keye_agent.types import Message, TextPart

__all__ = ["CALL_CLOSE", "CALL_OPEN", "THINK_CLOSE", "THINK_OPEN", "StreamSplitter", "hermes_messages",
           "message_text", "native_messages", "render_call", "tools_block"]


def message_text(m: Message, backend: str) -> str:
    """The text of a message; images and videos are refused (a text-only model would silently ignore them)."""
    if m.content is None or isinstance(m.content, str):
        return m.content or ""
    if any(not isinstance(p, TextPart) for p in m.content):
        raise ConfigError(f"{backend} is a text-only model and cannot read the image or video in a {m.role} message",
                          hint="use the Keye backend or an OpenAI-compatible vision model for images")
    return m.text


def native_messages(messages: Sequence[Message], backend: str) -> list[dict[str, Any]]:
    """OpenAI-shaped dicts with text content, for a chat template that renders tools itself (Qwen3's, say)."""
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


def hermes_messages(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
                    backend: str) -> list[dict[str, str]]:
    """Plain role/content messages for a chat template without tool support (see
    :func:`keye_agent.formats.hermes.plain_chat`)."""
    return plain_chat(native_messages(messages, backend), tools)
