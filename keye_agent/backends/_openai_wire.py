"""The OpenAI chat-completions wire format: our messages out, the server's answer (whole or as SSE deltas) in.

Kept apart from the HTTP client in :mod:`keye_agent.backends.openai` so that it can be read and tested alone.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keye_agent.errors import ModelError
from keye_agent.formats.hermes import CALL_SUFFIX, StreamSplitter, call_prefix
from keye_agent.types import (
    AssistantTurn,
    FinishReason,
    GenerationSettings,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    Usage,
    VideoPart,
)

from .parsing import OPEN, THINK_CLOSE, THINK_OPEN, coerce_arguments, parse_tool_calls


@dataclass(frozen=True)
class OpenAICallFormat:
    """Tool calls through the API's function calling (the request's ``tools`` field): the server turns the model's
    calls into structured ``tool_calls``, so the model is never told about tags."""

    name: str = "openai"

    def how_to_call(self) -> str:
        return ("Call a tool through function calling, with one of the tools you were given: its exact name, and "
                "its arguments as one valid JSON object (double quotes, no trailing commas); or answer in plain text.")


OPENAI_CALL_FORMAT = OpenAICallFormat()

_FINISH: dict[str, FinishReason] = {
    "stop": "stop", "eos": "stop", "tool_calls": "tool_calls", "function_call": "tool_calls", "length": "length",
    "content_filter": "error", "error": "error", "abort": "cancelled", "cancelled": "cancelled",
}


def image_url(part: ImagePart) -> str:
    """An ``image_url`` value: http(s) and data URLs as they are; inline data and local files as data URLs."""
    if part.data:
        return f"data:{part.mime_type};base64,{part.data}"
    url = part.url or ""
    if url.startswith(("http://", "https://", "data:")):
        return url
    path = Path(url.removeprefix("file://"))
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read image {str(path)!r} for the request: {e.strerror}",
                         hint="give an existing file, an http(s) URL or inline base64 data") from e
    mime = mimetypes.guess_type(path.name)[0] or part.mime_type
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _parts(content: str | list[Any] | None) -> str | list[dict[str, Any]] | None:
    if content is None or isinstance(content, str):
        return content
    if all(isinstance(p, TextPart) for p in content):
        return "".join(p.text for p in content)
    out: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            out.append({"type": "image_url", "image_url": {"url": image_url(p)}})
        elif isinstance(p, VideoPart):
            out.append({"type": "video_url", "video_url": {"url": p.url}})  # vLLM / SGLang extension
    return out


def to_wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Our messages as OpenAI chat messages. Tool messages carry text only on the wire, so images a tool returned
    follow the run of tool messages in one user message (a user message between tool messages is refused)."""
    wire: list[dict[str, Any]] = []
    pending_images: list[dict[str, Any]] = []

    def flush_images() -> None:
        if pending_images:
            wire.append({"role": "user", "content": [{"type": "text", "text": "Images returned by the tools:"},
                                                     *pending_images]})
            pending_images.clear()

    for m in messages:
        if m.role != "tool":
            flush_images()
        if m.role == "assistant":
            # "" rather than null: llama-cpp-python's server answers HTTP 500 to a null content (its message
            # model wants a string), and every other server accepts the empty string beside tool_calls
            msg: dict[str, Any] = {"role": "assistant", "content": _parts(m.content) or ""}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                    for c in m.tool_calls
                ]
            wire.append(msg)
        elif m.role == "tool":
            content = m.content
            if isinstance(content, list):
                pending_images.extend(
                    {"type": "image_url", "image_url": {"url": image_url(p)}}
                    for p in content if isinstance(p, ImagePart))
                content = m.text
            wire.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": content or ""})
        else:
            msg = {"role": m.role, "content": _parts(m.content) or ""}
            if m.name:
                msg["name"] = m.name
            wire.append(msg)
    flush_images()
    return wire


def tool_choice_wire(choice: str) -> str | dict[str, Any]:
    """"auto", "required", "none", or the name of the one tool that must be called."""
    if choice in ("auto", "required", "none"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def request_body(
    model: str, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings,
    *, stream: bool, extra_body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": to_wire_messages(messages),
        "max_tokens": settings.max_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if settings.stop:
        body["stop"] = list(settings.stop)
    if settings.seed is not None:
        body["seed"] = settings.seed
    # not in OpenAI's API, understood by vLLM, SGLang and llama.cpp; sent only when they change anything
    if settings.top_k > 0:
        body["top_k"] = settings.top_k
    if settings.repetition_penalty != 1.0:
        body["repetition_penalty"] = settings.repetition_penalty
    if settings.enable_thinking is not None:
        body["chat_template_kwargs"] = {"enable_thinking": settings.enable_thinking}
    if tools:
        body["tools"] = list(tools)
        choice = settings.tool_choice
        if choice == "required" and len(tools) == 1:
            # the same demand in the form every tool-calling server takes (llama-cpp-python answers HTTP 500 to
            # "required", and older vLLM releases refuse it)
            choice = str((tools[0].get("function") or {}).get("name") or choice)
        body["tool_choice"] = tool_choice_wire(choice)
    if extra_body:
        body.update(extra_body)
    return body


@dataclass
class _CallAcc:
    id: str = ""
    name: str = ""
    arguments: str = ""
    args_obj: dict[str, Any] | None = None  # servers that send an object, against the spec

    def complete(self) -> bool:
        """A name and arguments that already parse: a later delta for the same index is a repeat or a new call."""
        if not self.name:
            return False
        if self.args_obj is not None:
            return True
        return _is_json_object(self.arguments)


def merge_piece(acc: str, piece: str) -> str:
    """Add one streamed piece of a name or of an arguments string to what came before.

    The spec sends the name once and the arguments as consecutive fragments. Servers differ: llama-cpp-python
    repeats ``function.name`` in every delta, some send the whole text so far in each delta (cumulative), LM
    Studio sends ``""`` after the first. A piece equal to a complete value is a repeat; a piece that starts with
    everything so far is the cumulative form; anything else is the next fragment.
    """
    if not piece:
        return acc
    if not acc:
        return piece
    if piece == acc and (_is_json_object(acc) or not acc.lstrip().startswith("{")):
        return acc  # a repeated name, or repeated whole arguments
    if len(acc) >= 2 and len(piece) > len(acc) and piece.startswith(acc):
        return piece  # cumulative
    return acc + piece


def _cut_off(text: str) -> bool:
    """Arguments that are the start of a JSON object whose end never came (the answer ran out of tokens)."""
    text = text.strip()
    if not text.startswith("{"):
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return e.pos >= len(text) - 1 or "Unterminated" in e.msg
    return False


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


@dataclass
class TurnBuilder:
    """Collects a whole message or its stream deltas and builds the :class:`AssistantTurn`."""

    tools_offered: bool
    parse_text: bool = True
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, _CallAcc] = field(default_factory=dict)
    finish: str | None = None
    usage: Usage = field(default_factory=Usage)
    max_tokens: int | None = None  # the request's limit: usage that reaches it means the answer was cut
    _slot: dict[int, _CallAcc] = field(default_factory=dict)  # the call each server index points at now

    def add_message(self, msg: dict[str, Any]) -> None:
        self.add_delta(msg)

    def add_delta(self, delta: dict[str, Any]) -> tuple[str, str]:
        """Take one delta (or a whole message); return its (text, reasoning) pieces."""
        text = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        if not isinstance(text, str):
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if text:
            self.content.append(text)
        if isinstance(reasoning, str) and reasoning:
            self.reasoning.append(reasoning)
        for pos, tc in enumerate(delta.get("tool_calls") or []):
            if isinstance(tc, dict):
                self._add_call_delta(pos, tc)
        return text, reasoning if isinstance(reasoning, str) else ""

    def _add_call_delta(self, pos: int, tc: dict[str, Any]) -> None:
        idx = tc.get("index", pos)
        idx = idx if isinstance(idx, int) else pos
        fn = tc.get("function") or {}
        call_id = str(tc["id"]) if tc.get("id") not in (None, "") else ""  # LM Studio: numeric ids
        name = fn.get("name") if isinstance(fn.get("name"), str) else ""
        acc = self._slot.get(idx)
        # a second whole call under the same index (Ollama sends each call whole, in its own chunk): a new id, or
        # a new name after a complete call, starts a new call instead of being glued onto the first
        if acc is not None and acc.complete() and (
                (call_id and acc.id and call_id != acc.id) or (name and name != acc.name)):
            acc = None
        if acc is None:
            acc = _CallAcc()
            self._slot[idx] = acc
            self.calls[len(self.calls)] = acc
        acc.id = acc.id or call_id
        acc.name = merge_piece(acc.name, name)
        args = fn.get("arguments")
        if isinstance(args, dict):
            acc.args_obj = args
        elif isinstance(args, str):
            acc.arguments = merge_piece(acc.arguments, args)

    def add_usage(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.usage = Usage(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                               completion_tokens=int(usage.get("completion_tokens") or 0))

    def build(self) -> AssistantTurn:
        text = "".join(self.content)
        reasoning = "".join(self.reasoning).strip() or None
        calls: list[ToolCall] = []
        errors: list[str] = []
        raw_calls: list[str] = []
        for n, (_, acc) in enumerate(sorted(self.calls.items())):
            label = f"tool call {n + 1} from the server ({acc.name or 'no name'!r}, id {acc.id or '?'})"
            raw_calls.append(call_prefix(acc.name) + (acc.arguments or json.dumps(acc.args_obj or {})) + CALL_SUFFIX)
            if not acc.name:
                errors.append(f"{label}: the call has no function name")
                continue
            args, why = coerce_arguments(acc.args_obj if acc.args_obj is not None else acc.arguments)
            if args is None:
                errors.append(f"{label}: {why}")
                continue
            call_id = acc.id if acc.id and acc.id not in {c.id for c in calls} else f"call_{n}"
            calls.append(ToolCall(id=call_id, name=acc.name, arguments=args))
        raw = text + ("\n" if text and raw_calls else "") + "\n".join(raw_calls)
        if self.parse_text and (self.tools_offered or THINK_OPEN in text or THINK_CLOSE in text):
            parsed = parse_tool_calls(text, allow_untagged=self.tools_offered and not self.calls)
            text, reasoning = parsed.text, reasoning or parsed.reasoning
            taken = {c.id for c in calls}
            for c in parsed.tool_calls:
                calls.append(c if c.id not in taken else c.model_copy(update={"id": f"call_{len(calls)}"}))
            errors.extend(parsed.errors)
        if (self.tools_offered and not calls and not text.strip() and reasoning and OPEN in reasoning
                and not errors):
            # a server with a reasoning parser hands a call the model wrote inside <think> over as reasoning
            # (vllm-project/vllm#17655): said to the model as the markup path says it, never run
            errors.append(f"the only {OPEN} is inside the reasoning and the answer is empty: tool calls inside "
                          f"reasoning are not run; write them after {THINK_CLOSE}")
        finish = _FINISH.get(self.finish or "stop", "stop")
        if calls and finish == "stop":
            finish = "tool_calls"  # servers without a tool parser say "stop" (Ollama streams say "stop" too)
        if finish != "length" and (any(_cut_off(acc.arguments) for acc in self.calls.values() if acc.args_obj is None)
                                   or (self.max_tokens and self.usage.completion_tokens >= self.max_tokens)):
            finish = "length"  # servers report "tool_calls" for a call cut at max_tokens mid-arguments
        return AssistantTurn(text=text, reasoning=reasoning, tool_calls=calls, usage=self.usage,
                             finish_reason=finish, parse_errors=errors, raw=raw or None)


def DeltaRouter() -> StreamSplitter:  # noqa: N802 (the name of the class it replaced)
    """Routes streamed content deltas from servers that leave the Qwen markup in the text: a leading
    ``<think>...</think>`` goes out as reasoning, and nothing from the first ``<tool_call>`` on is shown as text
    (the final turn carries the parsed calls); the Hermes format's splitter, holding back partial tags."""
    return StreamSplitter(text_after_calls=False)


