"""OpenAI chat messages (the request's ``messages``) into :class:`~keye_agent.types.Message`, every problem a
:class:`~keye_agent.errors.RequestError` that names the field (``messages[2].tool_calls[0].function.arguments``).

Images come as ``image_url`` parts holding a ``data:`` URL or an http(s) URL (fetched by the backend through the
network guard: public addresses only); videos as ``video_url`` parts (vLLM's and SGLang's extension) with an
http(s) URL. A path or ``file://`` URL is refused: a client must never make the server read its own files.
"""

from __future__ import annotations

import json
import re
from typing import Any

from keye_agent.errors import RequestError
from keye_agent.types import ContentPart, ImagePart, Message, TextPart, ToolCall, VideoPart

ROLES = ("system", "user", "assistant", "tool")
_ALIASES = {"developer": "system"}  # OpenAI's newer name of the system role
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)$", re.S)


def bad(param: str, message: str, **kw: Any) -> RequestError:
    """A 400 for the request field ``param``."""
    return RequestError(f"{param}: {message}", param=param, **kw)


def parse_messages(raw: Any) -> list[Message]:
    """The request's ``messages``: a non-empty list of chat messages."""
    if not isinstance(raw, list) or not raw:
        raise bad("messages", "must be a non-empty list of chat messages")
    out: list[Message] = []
    names: dict[str, str] = {}  # call id -> tool name, so a tool message can carry the name its template shows
    for i, m in enumerate(raw):
        msg = parse_message(m, f"messages[{i}]", names)
        for c in msg.tool_calls or ():
            names[c.id] = c.name
        out.append(msg)
    return out


def parse_message(m: Any, at: str, names: dict[str, str]) -> Message:
    if not isinstance(m, dict):
        raise bad(at, f"must be an object with a role, not {type(m).__name__}")
    role = m.get("role")
    role = _ALIASES.get(role, role) if isinstance(role, str) else role
    if role not in ROLES:
        raise bad(f"{at}.role", f"unknown role {m.get('role')!r}; expected one of {', '.join(ROLES)} (or developer)",
                  hint="the legacy 'function' role is 'tool' now, with a tool_call_id" if role == "function" else None)
    name = _opt_str(m, "name", at)
    content = _content(m.get("content"), f"{at}.content", role)
    if role == "assistant":
        calls = _tool_calls(m.get("tool_calls"), f"{at}.tool_calls")
        if content is None and not calls:
            raise bad(f"{at}.content", "an assistant message needs content or tool_calls")
        return Message(role="assistant", content=content, tool_calls=calls or None, name=name)
    if content is None:
        raise bad(f"{at}.content", f"a {role} message needs content")
    if role == "tool":
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise bad(f"{at}.tool_call_id", "a tool message needs the tool_call_id of the call it answers")
        return Message(role="tool", content=content, tool_call_id=call_id, name=name or names.get(call_id))
    return Message(role=role, content=content, name=name)


def _opt_str(m: dict[str, Any], key: str, at: str) -> str | None:
    v = m.get(key)
    if v is not None and not isinstance(v, str):
        raise bad(f"{at}.{key}", f"must be a string, not {type(v).__name__}")
    return v


def _content(raw: Any, at: str, role: str) -> str | list[ContentPart] | None:
    if raw is None or isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise bad(at, f"must be a string or a list of content parts, not {type(raw).__name__}")
    parts = [_part(p, f"{at}[{j}]") for j, p in enumerate(raw)]
    if role in ("system", "assistant") and any(not isinstance(p, TextPart) for p in parts):
        raise bad(at, f"a {role} message holds text parts only")
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return parts


def _part(p: Any, at: str) -> ContentPart:
    if not isinstance(p, dict) or not isinstance(p.get("type"), str):
        raise bad(at, "a content part is an object with a type (text, image_url or video_url)")
    kind = p["type"]
    if kind == "text":
        if not isinstance(p.get("text"), str):
            raise bad(f"{at}.text", "must be a string")
        return TextPart(text=p["text"])
    if kind in ("image_url", "video_url"):
        ref = p.get(kind)
        url = ref.get("url") if isinstance(ref, dict) else ref
        if not isinstance(url, str) or not url:
            raise bad(f"{at}.{kind}.url", "must be a URL string")
        m = _DATA_URL.match(url)
        if kind == "image_url" and m:
            return ImagePart(data=m.group("data"), mime_type=m.group("mime") or "image/png")
        if not url.startswith(("http://", "https://")):
            raise bad(f"{at}.{kind}.url", "must be an http(s) URL" + (" or a base64 data: URL" * (kind == "image_url")),
                      hint="the server never reads files of its own machine; send the image inline as base64")
        return ImagePart(url=url) if kind == "image_url" else VideoPart(url=url)
    raise bad(f"{at}.type", f"unsupported content part type {kind!r}; expected text, image_url or video_url")


def _tool_calls(raw: Any, at: str) -> list[ToolCall]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad(at, "must be a list of tool calls")
    calls: list[ToolCall] = []
    for j, c in enumerate(raw):
        here = f"{at}[{j}]"
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise bad(f"{here}.function", 'a tool call is {"id", "type": "function", "function": {"name", "arguments"}}')
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError as e:
                raise bad(f"{here}.function.arguments", f"not valid JSON ({e})") from None
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise bad(f"{here}.function.arguments", "must be a JSON object (as a string)")
        call_id = c.get("id")
        calls.append(ToolCall(id=call_id if isinstance(call_id, str) and call_id else f"call_{j}", name=fn["name"],
                              arguments=args))
    return calls
