"""OpenAI-shaped answers: a whole ``chat.completion``, the ``chat.completion.chunk`` events of a stream (SSE, ended
by ``data: [DONE]``), and the error object ``{"error": {"message", "type", "param", "code"}}``.

A stream sends the role first, then text (``content``) and reasoning (``reasoning_content``, as vLLM and SGLang
name it) deltas as the backend makes them; the tool calls follow once the turn is parsed, each as OpenAI sends
them (a delta with its index, id and name, then one with its arguments), then the finish reason and, with
``stream_options.include_usage``, a last chunk with the usage and no choices.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from keye_agent.errors import RequestError, redact
from keye_agent.formats.hermes import THINK_CLOSE
from keye_agent.types import AssistantTurn, Usage

_FINISH = {"stop": "stop", "tool_calls": "tool_calls", "length": "length", "error": "stop", "cancelled": "stop"}


def error_body(e: RequestError) -> dict[str, Any]:
    message = e.args[0] if e.args else str(e)
    if e.hint:
        message = f"{message} (hint: {e.hint})"
    return {"error": {"message": message, "type": e.error_type, "param": e.param, "code": e.code}}


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def usage_body(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def visible_text(turn: AssistantTurn, streamed: str | None = None) -> str:
    """The content a client sees: the text the backend streamed (``streamed``; else the turn's text, which a
    backend may have stripped), so a whole answer and a stream say the same; when a tool call could not be parsed,
    the raw output after the reasoning instead, so the client (and its model) see what was written, not nothing."""
    if turn.parse_errors and turn.raw:
        raw = turn.raw
        return raw.split(THINK_CLOSE, 1)[1] if THINK_CLOSE in raw else raw
    return turn.text if streamed is None else streamed


def tool_calls_body(turn: AssistantTurn) -> list[dict[str, Any]]:
    # ids made here, unique per server: a backend numbers its calls per turn (call_0), and clients key results by id
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
            for c in turn.tool_calls]


@dataclass
class Completion:
    """The identity of one answer: its id, creation time and model name, shared by all its chunks."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def whole(self, turn: AssistantTurn, streamed: str | None = None) -> dict[str, Any]:
        """The ``chat.completion`` object of a finished turn (``streamed``: its text as the backend streamed it)."""
        message: dict[str, Any] = {"role": "assistant", "content": visible_text(turn, streamed) or None}
        if turn.tool_calls:
            message["tool_calls"] = tool_calls_body(turn)
        elif message["content"] is None:
            message["content"] = ""
        if turn.reasoning:
            message["reasoning_content"] = turn.reasoning
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": _FINISH[turn.finish_reason]}],
                "usage": usage_body(turn.usage), "system_fingerprint": None}

    def chunk(self, delta: dict[str, Any], finish: str | None = None, *, usage: bool = False) -> bytes:
        """One ``chat.completion.chunk`` event; ``usage=True`` adds ``"usage": null`` (include_usage streams)."""
        body: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                "model": self.model, "system_fingerprint": None,
                                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if usage:
            body["usage"] = None
        return sse(body)

    def usage_chunk(self, usage: Usage) -> bytes:
        return sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "system_fingerprint": None, "choices": [], "usage": usage_body(usage)})

    def ending(self, turn: AssistantTurn, streamed: str, include_usage: bool) -> list[bytes]:
        """The events after the streamed deltas: the content not streamed yet (a call that did not parse), the
        tool calls, the finish reason, the usage, ``[DONE]``."""
        out: list[bytes] = []
        text = visible_text(turn, streamed)
        if turn.parse_errors and text.startswith(streamed) and len(text) > len(streamed):
            out.append(self.chunk({"content": text[len(streamed):]}, usage=include_usage))
        for i, call in enumerate(tool_calls_body(turn)):
            fn = call["function"]
            out.append(self.chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                   "function": {"name": fn["name"], "arguments": ""}}]},
                                  usage=include_usage))
            out.append(self.chunk({"tool_calls": [{"index": i, "function": {"arguments": fn["arguments"]}}]},
                                  usage=include_usage))
        out.append(self.chunk({}, _FINISH[turn.finish_reason], usage=include_usage))
        if include_usage:
            out.append(self.usage_chunk(turn.usage))
        out.append(sse("[DONE]"))
        return out


def stream_error(e: RequestError) -> list[bytes]:
    """A failure after the stream began: an event with the error object (the openai SDK raises it), ``[DONE]``."""
    return [sse(error_body(e)), sse("[DONE]")]


def internal_error(e: BaseException) -> RequestError:
    """A failure that is no fault of the request, as a 500 whose message carries no secret."""
    return RequestError(f"the model failed: {type(e).__name__}: {redact(str(e))}", status=500,
                        error_type="server_error", code="internal_error")
