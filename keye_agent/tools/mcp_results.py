"""Mapping MCP tool results (``CallToolResult``) to what our tools return, and our results back to MCP content.

Text blocks become the text the model reads; image blocks become :class:`ImagePart` attachments; structured
content is shown as JSON when the server sent no text; audio and binary resources are named, not inlined; an
``isError`` result becomes a :class:`ToolExecutionError` carrying the server's text. A result past the size cap is
refused whole (a cut JSON document would mislead the model).
"""

from __future__ import annotations

import json
from typing import Any

from keye_agent.errors import ToolExecutionError
from keye_agent.types import ImagePart

from .base import ToolOutput

__all__ = ["result_size", "to_tool_output"]


def _block_text(block: Any) -> tuple[str | None, ImagePart | None]:
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text, None
    if kind == "image":
        return None, ImagePart(data=block.data, mime_type=block.mime_type)
    if kind == "audio":
        return f"[audio ({block.mime_type}) omitted: {len(block.data) * 3 // 4} bytes]", None
    if kind == "resource":
        res = block.resource
        text = getattr(res, "text", None)
        if text is not None:
            return text, None
        return f"[binary resource {res.uri} ({getattr(res, 'mime_type', None) or 'unknown type'}) omitted]", None
    if kind == "resource_link":
        return f"[resource {block.uri}" + (f": {block.name}" if getattr(block, "name", None) else "") + "]", None
    return f"[{kind or type(block).__name__} content omitted]", None


def result_size(result: Any) -> int:
    """Bytes of a result as it would enter the conversation: text, inline data and structured content."""
    size = 0
    for block in result.content:
        for attr in ("text", "data"):
            value = getattr(block, attr, None)
            if isinstance(value, str):
                size += len(value.encode("utf-8"))
        res = getattr(block, "resource", None)
        for attr in ("text", "blob"):
            value = getattr(res, attr, None) if res is not None else None
            if isinstance(value, str):
                size += len(value.encode("utf-8"))
    if result.structured_content is not None:
        size += len(json.dumps(result.structured_content, ensure_ascii=False, default=str).encode("utf-8"))
    return size


def to_tool_output(result: Any, *, tool: str, server: str, max_bytes: int) -> ToolOutput:
    """The :class:`ToolOutput` of an MCP ``CallToolResult``; raises :class:`ToolExecutionError` for an error
    result or one larger than ``max_bytes``."""
    size = result_size(result)
    if size > max_bytes:
        raise ToolExecutionError(
            f"the result of {tool!r} from MCP server {server!r} is {size} bytes, over the limit of {max_bytes}; "
            "ask for less (a narrower query, fewer items)", tool=tool)
    texts: list[str] = []
    images: list[ImagePart] = []
    for block in result.content:
        text, image = _block_text(block)
        if text is not None:
            texts.append(text)
        if image is not None:
            images.append(image)
    if not texts and result.structured_content is not None:
        texts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    content = "\n".join(texts)
    if result.is_error:
        raise ToolExecutionError(f"{tool!r} failed on MCP server {server!r}: {content or 'no message given'}",
                                 tool=tool)
    return ToolOutput(content=content, attachments=images)
