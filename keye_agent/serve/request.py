"""A ``/v1/chat/completions`` body into a :class:`ChatRequest`: our messages, the offered tools and the
:class:`~keye_agent.types.GenerationSettings`; every problem a 400 :class:`~keye_agent.errors.RequestError` naming
the parameter.

Defaults are OpenAI's (``temperature`` 1, ``top_p`` 1). Understood beyond OpenAI's fields, as vLLM and SGLang
understand them: ``top_k``, ``repetition_penalty`` and ``chat_template_kwargs.enable_thinking``. Refused rather
than ignored, since the answer would not be what was asked: ``n`` > 1, ``logprobs``, a non-zero
``presence_penalty``/``frequency_penalty``, a ``logit_bias``, a ``response_format`` other than text. Fields that
change nothing about the answer (``user``, ``metadata``, ``store``, ``parallel_tool_calls``...) are accepted and
ignored; ``parallel_tool_calls`` is the backend's own setting (the demo model makes one call a turn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for

from keye_agent.errors import RequestError
from keye_agent.types import GenerationSettings, Message

from .messages import bad, parse_messages

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_STOPS = 16


@dataclass
class ChatRequest:
    """What one chat-completions request asks for."""

    model: str
    messages: list[Message]
    tools: list[dict[str, Any]] | None
    settings: GenerationSettings
    stream: bool = False
    include_usage: bool = False
    """``stream_options.include_usage``: a last chunk with the usage (and ``"usage": null`` in the others)."""


def parse_chat_request(body: Any, *, default_max_tokens: int) -> ChatRequest:
    """Check ``body`` (decoded JSON) and build the request. ``default_max_tokens``: when the client gives none."""
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, not {type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model", "required: the name of the model (GET /v1/models lists it)")
    messages = parse_messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools)
    _refuse_unsupported(body)
    stream = _bool(body, "stream", False)
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise bad("stream_options", "must be an object")
    include_usage = stream and bool((opts or {}).get("include_usage"))
    max_tokens = _int(body, "max_completion_tokens", 1) or _int(body, "max_tokens", 1) or default_max_tokens
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise bad("chat_template_kwargs", "must be an object")
    thinking = (kwargs or {}).get("enable_thinking")
    if thinking is not None and not isinstance(thinking, bool):
        raise bad("chat_template_kwargs.enable_thinking", "must be true or false")
    settings = GenerationSettings(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, open_low=True),
        top_k=max(0, _int(body, "top_k", -1) or 0),  # -1: vLLM's "off"
        repetition_penalty=_number(body, "repetition_penalty", 1.0, 0.0, None, open_low=True),
        stop=_stop(body.get("stop")),
        tool_choice=choice,
        seed=_int(body, "seed", None),
        enable_thinking=thinking,
    )
    return ChatRequest(model, messages, tools, settings, stream, include_usage)


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise bad("tools", "must be a list of function tools")
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, t in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(t.get("function"), dict):
            raise bad(at, 'a tool is {"type": "function", "function": {"name", "description", "parameters"}}')
        fn = t["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise bad(f"{at}.function.name", f"{name!r} is not a tool name (1-64 of letters, digits, _ . -)")
        if name in seen:
            raise bad(f"{at}.function.name", f"two tools are named {name!r}")
        seen.add(name)
        if fn.get("description") is not None and not isinstance(fn["description"], str):
            raise bad(f"{at}.function.description", "must be a string")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        _check_schema(params, f"{at}.function.parameters")
        out.append({"type": "function", "function": {**fn, "parameters": params}})
    return out or None


def _check_schema(schema: Any, at: str) -> None:
    if not isinstance(schema, dict):
        raise bad(at, f"must be a JSON Schema object, not {type(schema).__name__}")
    try:
        validator_for(schema, default=validator_for({})).check_schema(schema)  # draft 2020-12 unless $schema says
    except SchemaError as e:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        raise bad(at + where, f"not a valid JSON Schema: {e.message}") from None
    if schema.get("type", "object") != "object":
        raise bad(f"{at}.type", f"the parameters of a function are an object schema, not {schema.get('type')!r}")


def _tool_choice(raw: Any, tools: list[dict[str, Any]] | None) -> str:
    names = [t["function"]["name"] for t in tools or ()]
    if raw is None:
        return "auto"
    if raw in ("auto", "none"):
        return raw
    if raw == "required":
        if not names:
            raise bad("tool_choice", "'required' needs tools; the request has none")
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        name = raw["function"].get("name")
        if name not in names:
            raise bad("tool_choice", f"names the tool {name!r}, which is not among the request's tools "
                                     f"({', '.join(names) or 'none'})")
        return str(name)
    raise bad("tool_choice", 'must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}')


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise bad("n", f"only n=1 is supported, got {n!r}", hint="send n separate requests (they run concurrently)")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise bad("logprobs", "log probabilities are not supported")
    for key in ("presence_penalty", "frequency_penalty"):
        value = body.get(key)
        if value not in (None, 0, 0.0):
            raise bad(key, "not supported (only 0)", hint="repetition_penalty is supported")
    if body.get("logit_bias"):
        raise bad("logit_bias", "not supported")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise bad("response_format", "only {\"type\": \"text\"} is supported",
                  hint="for structured output offer a tool with tool_choice naming it: its arguments follow the schema")


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    v = body.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise bad(key, f"must be true or false, not {v!r}")
    return v


def _int(body: dict[str, Any], key: str, low: int | None) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(key, f"must be an integer, not {v!r}")
    if low is not None and v < low:
        raise bad(key, f"must be at least {low}, got {v}")
    return v


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float | None,
            open_low: bool = False) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise bad(key, f"must be a number, not {v!r}")
    if v < low or (open_low and v == low) or (high is not None and v > high):
        span = f"{'(' if open_low else '['}{low:g}, {high:g}]" if high is not None else f"> {low:g}"
        raise bad(key, f"must be in {span}, got {v}")
    return float(v)


def _stop(raw: Any) -> list[str]:
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise bad("stop", "must be a string or a list of strings")
    if len(items) > MAX_STOPS:
        raise bad("stop", f"at most {MAX_STOPS} stop strings, got {len(items)}")
    return [s for s in items if s]
