"""Chat templates: our own renderer of the Qwen3 ChatML format, and Jinja rendering of a checkpoint's template.

Messages are plain dicts in the OpenAI chat shape (``role``, ``content`` as a string, None or a list of parts,
``tool_calls`` as ``[{"id", "type": "function", "function": {"name", "arguments"}}]``, optional
``reasoning_content``); tools are OpenAI function schemas. No pydantic: keye_agent.model must run without it.

The Qwen3 format (MODEL.md): ``<|im_start|>role\\n...<|im_end|>\\n`` turns; tools in the system turn under
``# Tools`` inside ``<tools>``, one JSON schema per line; calls as ``<tool_call>\\n{"name": ..., "arguments": ...}
\\n</tool_call>``; consecutive tool results merged into one user turn of ``<tool_response>`` blocks; reasoning in
``<think>...</think>``, kept only for assistant turns after the last real user query; ``enable_thinking=False``
pre-fills an empty think block. The Hermes parts (the tools preamble, how a call and a result are written) come
from :mod:`keye_agent.formats.hermes`, plain Python like this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from keye_agent.formats.hermes import render_call, render_response, tools_block

__all__ = ["content_text", "render_jinja", "render_qwen3"]

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
_ROLES = ("system", "user", "assistant", "tool")


def content_text(content: Any, where: str = "content") -> str:
    """A message content as text: strings as they are, None as "", parts joined (images/videos as placeholders)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        out = []
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                out.append(str(part.get("text", "")))
            elif kind in ("image", "image_url"):
                out.append(IMAGE_PLACEHOLDER)
            elif kind in ("video", "video_url"):
                out.append(VIDEO_PLACEHOLDER)
            else:
                raise ValueError(f"{where}[{i}]: unknown content part {part!r}; expected type text, image or video")
        return "".join(out)
    raise TypeError(f"{where} must be a string, null or a list of parts, got {type(content).__name__}")


def _check(messages: Sequence[Mapping[str, Any]]) -> None:
    if not messages:
        raise ValueError("messages must not be empty")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise TypeError(f"messages[{i}] must be a dict, got {type(m).__name__}")
        if m.get("role") not in _ROLES:
            raise ValueError(f"messages[{i}].role must be one of {list(_ROLES)}, got {m.get('role')!r}")


def _tool_call_text(call: Mapping[str, Any], where: str) -> str:
    fn = call.get("function") or call
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.function.name must be a non-empty string, got {name!r}")
    return render_call(name, fn.get("arguments", {}))


def render_qwen3(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None,
                 add_generation_prompt: bool = True, enable_thinking: bool | None = None) -> str:
    """Render a conversation in the Qwen3 chat format (see the module docstring)."""
    _check(messages)
    texts = [content_text(m.get("content"), f"messages[{i}].content") for i, m in enumerate(messages)]
    out: list[str] = []
    first_is_system = messages[0]["role"] == "system"
    if tools:
        out.append("<|im_start|>system\n")
        if first_is_system:
            out.append(texts[0] + "\n\n")
        out.append(tools_block(tools) + "<|im_end|>\n")
    elif first_is_system:
        out.append("<|im_start|>system\n" + texts[0] + "<|im_end|>\n")

    # The last user turn that is a real query (not a wrapped tool response): reasoning before it is dropped.
    last_query = len(messages) - 1
    for i in range(len(messages) - 1, -1, -1):
        t = texts[i]
        if messages[i]["role"] == "user" and not (t.startswith("<tool_response>") and t.endswith("</tool_response>")):
            last_query = i
            break

    n = len(messages)
    for i, m in enumerate(messages):
        role, content = m["role"], texts[i]
        if role == "user" or (role == "system" and i > 0):
            out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        elif role == "assistant":
            reasoning = m.get("reasoning_content")
            if reasoning is None:
                reasoning = ""
                if "</think>" in content:
                    reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
                    content = content.split("</think>")[-1].lstrip("\n")
            if i > last_query and (i == n - 1 or reasoning):
                out.append("<|im_start|>assistant\n<think>\n" + reasoning.strip("\n") + "\n</think>\n\n"
                           + content.lstrip("\n"))
            else:
                out.append("<|im_start|>assistant\n" + content)
            for j, call in enumerate(m.get("tool_calls") or ()):
                if j > 0 or content:
                    out.append("\n")
                out.append(_tool_call_text(call, f"messages[{i}].tool_calls[{j}]"))
            out.append("<|im_end|>\n")
        elif role == "tool":
            if i == 0 or messages[i - 1]["role"] != "tool":
                out.append("<|im_start|>user")
            out.append("\n" + render_response(content))
            if i == n - 1 or messages[i + 1]["role"] != "tool":
                out.append("<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
        if enable_thinking is False:
            out.append("<think>\n\n</think>\n\n")
    return "".join(out)


def render_jinja(template: str, messages: Sequence[Mapping[str, Any]],
                 tools: Sequence[Mapping[str, Any]] | None = None, add_generation_prompt: bool = True,
                 **variables: Any) -> str:
    """Render a checkpoint's Jinja chat template the way the Hugging Face ecosystem does.

    Sandboxed environment with ``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, the
    ``tojson`` filter (non-ASCII kept), ``raise_exception`` and ``strftime_now``. ``variables`` (bos_token,
    eos_token, enable_thinking, ...) are passed to the template; a None value is left undefined.
    """
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(f"chat template: {message}")

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    _check(messages)
    context = {k: v for k, v in variables.items() if v is not None}
    try:
        compiled = env.from_string(template)
        return compiled.render(messages=[dict(m) for m in messages], tools=list(tools) if tools else None,
                               add_generation_prompt=add_generation_prompt, **context)
    except jinja2.TemplateError as e:
        raise ValueError(f"chat template failed to render: {type(e).__name__}: {e}") from None
