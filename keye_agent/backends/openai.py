"""`OpenAIBackend`: any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, SGLang, llama.cpp, Ollama,
LM Studio, OpenAI itself) over httpx, with tools, SSE streaming, retries and timeouts.

    backend = OpenAIBackend("Qwen/Qwen3-8B", base_url="http://localhost:8000/v1")
    turn = backend.generate([Message.user("What is 2+2?")])

Retries (with exponential backoff and jitter) cover HTTP 429 (honouring ``Retry-After``), 5xx, connection errors
and timeouts; a stream is retried only while nothing of it has been passed on. Whatever retries cannot fix is a
:class:`~keye_agent.errors.BackendConnectionError` (or :class:`~keye_agent.errors.ContextWindowError` when the
server says the prompt is too long). Malformed tool-call arguments from the server never raise: they land in
``AssistantTurn.parse_errors`` for the planner loop to send back to the model. The API key is registered as a
secret, so it never appears in an error or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from keye_agent.errors import (
    BackendConnectionError,
    ConfigError,
    ContextWindowError,
    TransientError,
    redact,
    register_secret,
)
from keye_agent.retry import Backoff, Retrier, parse_retry_after
from keye_agent.tools.decoding import (
    ACCEPT_ENCODING,
    BodyTooLarge,
    DecodingError,
    aiter_decoded_lines,
    read_decoded,
)
from keye_agent.types import AssistantTurn, GenerationSettings, Message, StreamChunk, Usage

from ._openai_wire import OPENAI_CALL_FORMAT, DeltaRouter, TurnBuilder, request_body
from ._video_frames import has_video, videos_as_frames
from .base import BaseBackend, approx_token_count, run_sync

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 32 * 2**20
"""The most of one non-streamed completion that is read, decoded (the tool-call parser reads 2,000,000 characters)."""
_ERROR_BODY_BYTES = 64 * 1024
MAX_STREAM_BYTES = 256 * 2**20
"""The most of one streamed completion that is read, decoded, every event counted."""
MAX_EVENT_CHARS = 16 * 2**20
"""The longest line of a stream (one event's data)."""

_RETRY_STATUS = {408, 409, 429, 502, 503, 504}  # and a 500 that does not name a fault of the request itself
_CONTEXT_WORDS = ("context length", "context window", "maximum context", "too many tokens", "prompt is too long")
# words of a 5xx body that blame the request (a server bug triggered by what we sent): the same request fails the
# same way every time, so it is not retried (llama-cpp-python answers 500 to a schema error in the messages)
_REQUEST_FAULT_WORDS = ("validation error", "validationerror", "invalid", "not supported", "unsupported",
                        "typeerror", "keyerror", "valueerror", "attributeerror", "must be", "field required",
                        "input should be", "extra inputs", "unprocessable")
# words of an in-band stream error saying the server cannot stream this request (tools), where a plain request works
_NO_STREAM_WORDS = ("stream",)
PUBLIC_OPENAI_URL = "https://api.openai.com/v1"
ERROR_DETAIL_LIMIT = 4000
"""How much of a server's error body an error message keeps (after redaction): enough for a validation error's
whole list of problems."""


class OpenAIBackend(BaseBackend):
    """A model behind an OpenAI-compatible chat-completions endpoint.

    Args:
        model: the model name the server knows.
        base_url: the API root, ending in ``/v1`` (``/chat/completions`` is appended). None reads
            ``OPENAI_BASE_URL``; without either, the public OpenAI endpoint is used only when an API key is set
            (and the log says so), else :class:`~keye_agent.errors.ConfigError`: never a silent default.
        api_key: the bearer token; None reads ``OPENAI_API_KEY``; local servers usually need none.
        timeout: seconds to wait for the server: to connect, and between bytes of the answer. A non-streamed
            answer sends nothing until it is complete, so there this bounds the whole generation.
        max_retries: further attempts after the first, for 429, 5xx, connection errors and timeouts.
        context_window: the model's context length in tokens, for the planner loop's budgeting.
        headers: extra HTTP headers sent with every request.
        extra_body: extra fields merged into every request body (server-specific options).
        backoff_s: the first retry delay; it doubles per attempt (with jitter) up to ``max_backoff_s``.
        max_backoff_s: the longest wait between attempts; a server whose ``Retry-After`` asks for more gets its
            error raised at once.
        deadline_s: the longest one call may take, counted from its first request: no wait between attempts is
            taken that would end past it (each attempt is bounded by ``timeout``). None: only ``max_retries``.
        max_tokens_field: the request field for ``settings.max_tokens``: ``"max_tokens"`` (vLLM, SGLang,
            llama.cpp, Ollama) or ``"max_completion_tokens"`` (OpenAI's reasoning models refuse the former).
        parse_text_tool_calls: also parse ``<tool_call>``/``<think>`` markup the server left in the text (servers
            started without a tool-call parser).
        stream: ask for SSE streams in :meth:`astream`. False sends every request whole (servers that cannot
            stream, or cannot stream tool calls). With True, a server that answers a streamed request with tools by
            an error event saying it cannot stream (llama-cpp-python: "Automatic streaming tool choice is not
            supported") gets the same request once more unstreamed, and later requests with tools go unstreamed.
        video_as_frames: send each local video as its frames (JPEG images at 2 fps, at most 32, each after its
            time), for servers that take images but not videos; False sends ``video_url`` parts (vLLM, SGLang).
    """

    call_format = OPENAI_CALL_FORMAT

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        context_window: int = 32768,
        headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        deadline_s: float | None = None,
        max_tokens_field: str = "max_tokens",
        parse_text_tool_calls: bool = True,
        stream: bool = True,
        video_as_frames: bool = True,
    ) -> None:
        self.model = model
        self.video_as_frames = video_as_frames
        self.name = model
        self.context_window = context_window
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.deadline_s = deadline_s
        self.extra_body = dict(extra_body or {})
        self.parse_text_tool_calls = parse_text_tool_calls
        self.max_tokens_field = max_tokens_field
        self.stream = stream
        self._stream_tools = stream  # set False once a server said it cannot stream tool calls
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        base = (base_url or os.environ.get("OPENAI_BASE_URL") or "").strip().rstrip("/")
        if not base:
            if not key:
                raise ConfigError(
                    f"OpenAIBackend({model!r}) has no server to talk to: no base_url, no OPENAI_BASE_URL",
                    hint="pass base_url= (--base-url), e.g. http://localhost:8000/v1 for a local vLLM, SGLang or "
                         f"llama.cpp server, or set OPENAI_API_KEY to use {PUBLIC_OPENAI_URL}")
            base = PUBLIC_OPENAI_URL
            log.warning("no base_url or OPENAI_BASE_URL given: model %r goes to %s", model, base)
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        if key:
            register_secret(key)
            self._headers["Authorization"] = f"Bearer {key}"
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, url={self.url!r})"

    # -- client lifetime: an httpx client belongs to the event loop it first ran on --------------------------

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        hit = self._clients.get(id(loop))
        if hit is not None and hit[0] is loop and not hit[1].is_closed:
            return hit[1]
        # forget clients of loops that are gone (asyncio.run per sync call); their sockets died with the loop
        self._clients = {k: v for k, v in self._clients.items() if not v[0].is_closed()}
        client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), headers=self._headers)
        self._clients[id(loop)] = (loop, client)
        return client

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop."""
        hit = self._clients.pop(id(asyncio.get_running_loop()), None)
        if hit is not None:
            await hit[1].aclose()

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def generate(
        self,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]] | None = None,
        settings: GenerationSettings | None = None,
    ) -> AssistantTurn:
        """Sync wrapper of :meth:`agenerate` (its own event loop, closed with its client)."""

        async def once() -> AssistantTurn:
            try:
                return await self.agenerate(messages, tools, settings or GenerationSettings())
            finally:
                await self.aclose()

        return run_sync(once())

    # -- the protocol ------------------------------------------------------------------------------------------

    async def agenerate(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AssistantTurn:
        body = self._body(messages, tools, settings, stream=False)
        retrier = self._retrier()
        seen: set[str] = set()

        async def once() -> dict[str, Any]:
            try:
                return await self._post_once(body)
            except TransientError as e:
                raise self._unless_repeated(e, seen, body) from None

        try:
            data = await retrier.arun(once, on_retry=self._log_retry)
        except TransientError as e:
            raise self._final(e, retrier) from None
        choice = data["choices"][0]
        builder = TurnBuilder(tools_offered=bool(tools), parse_text=self.parse_text_tool_calls,
                              max_tokens=settings.max_tokens)
        builder.add_message(choice.get("message") or {})
        builder.finish = choice.get("finish_reason")
        builder.add_usage(data.get("usage"))
        return self._estimate_usage(builder.build(), messages, tools)

    async def astream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AsyncIterator[StreamChunk]:
        if not self.stream or (tools and not self._stream_tools):
            async for chunk in self._unstreamed(messages, tools, settings):
                yield chunk
            return
        body = self._body(messages, tools, settings, stream=True)
        retrier = self._retrier()
        seen: set[str] = set()
        while True:
            builder = TurnBuilder(tools_offered=bool(tools), parse_text=self.parse_text_tool_calls,
                              max_tokens=settings.max_tokens)
            router = DeltaRouter()
            yielded = 0
            try:
                # aclosing: a consumer that stops early closes the HTTP response now, not at garbage collection
                async with contextlib.aclosing(self._stream_once(body, builder)) as events:
                    async for kind, text in events:
                        for k, piece in router.feed(text) if kind == "text" else [(kind, text)]:
                            yielded += 1
                            yield StreamChunk(k, piece)  # type: ignore[arg-type]
                for k, piece in router.flush():
                    yield StreamChunk(k, piece)  # type: ignore[arg-type]
                yield StreamChunk("done", turn=self._estimate_usage(builder.build(), messages, tools))
                return
            except _CannotStream as e:
                if yielded or not tools:
                    raise BackendConnectionError(e.message, hint="pass stream=False (--no-stream)") from None
                log.warning("%s; this request and later ones with tools go unstreamed", e.message)
                self._stream_tools = False
                async for chunk in self._unstreamed(messages, tools, settings):
                    yield chunk
                return
            except TransientError as r:
                final = self._unless_repeated(r, seen, body)
                if isinstance(final, BackendConnectionError):
                    raise final from None
                if yielded:
                    raise BackendConnectionError(
                        f"{r.args[0]} (the stream had already delivered {yielded} piece(s); not retried)",
                        status_code=r.status_code, hint=r.hint,
                    ) from None
                wait = retrier.next_wait(r)
                if wait is None:
                    raise self._final(r, retrier) from None
                self._log_retry(r, wait, retrier.attempts - 1)
                await asyncio.sleep(wait)

    async def _unstreamed(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AsyncIterator[StreamChunk]:
        """One whole request, passed on as the chunks a stream would have given."""
        turn = await self.agenerate(messages, tools, settings)
        if turn.reasoning:
            yield StreamChunk("reasoning", turn.reasoning)
        if turn.text:
            yield StreamChunk("text", turn.text)
        yield StreamChunk("done", turn=turn)

    def _body(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings,
        *, stream: bool,
    ) -> dict[str, Any]:
        if self.video_as_frames and has_video(messages):
            messages = videos_as_frames(messages)
        body = request_body(self.model, messages, tools, settings, stream=stream, extra_body=None)
        if self.max_tokens_field != "max_tokens":
            body[self.max_tokens_field] = body.pop("max_tokens")
        body.update(self.extra_body)
        return body

    def _estimate_usage(
        self, turn: AssistantTurn, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None
    ) -> AssistantTurn:
        """Servers that report no usage get the tokenizer-free estimate, so the loop's token budgets still bind."""
        if turn.usage.prompt_tokens or turn.usage.completion_tokens:
            return turn
        turn.usage = Usage(prompt_tokens=self.count_tokens(messages, tools),
                           completion_tokens=approx_token_count(turn.raw or turn.text))
        return turn

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _retrier(self) -> Retrier:
        backoff = Backoff(base_s=self.backoff_s, max_s=self.max_backoff_s, max_retry_after_s=self.max_backoff_s)
        return Retrier(backoff, attempts=1 + self.max_retries, deadline_s=self.deadline_s)

    def _final(self, r: TransientError, retrier: Retrier) -> BackendConnectionError:
        """The error of the last attempt, saying how many were made (the hint is added once, here)."""
        note = retrier.outcome() or "after 1 attempt"
        note = f"gave up {note}" if note.startswith("after") else note
        return BackendConnectionError(f"{r.args[0]} ({note})", status_code=r.status_code, hint=r.hint)

    def _unless_repeated(self, e: TransientError, seen: set[str], body: dict[str, Any]) -> Any:
        """A 500 that comes back word for word is the server failing on this request, not a passing fault: the
        second one is final. Returns ``e`` when it may be retried, else the final error to raise."""
        if e.status_code != 500:
            return e
        key = str(e.args[0])
        if key not in seen:
            seen.add(key)
            return e
        hint = "the server failed the same way twice on this request, so retrying will not help"
        if body.get("tool_choice") == "required":
            hint += ("; it may not support tool_choice 'required' (llama-cpp-python's chatml-function-calling does "
                     "not): use 'auto' or the name of one tool")
        return BackendConnectionError(f"{key} (the same error twice: not retried further)", status_code=500,
                                      hint=hint)

    def _log_retry(self, r: BaseException, wait: float, attempt: int) -> None:
        log.warning("%s; retry %d of %d in %.2f s", redact(str(r.args[0])), attempt, self.max_retries, wait)

    async def _read(self, resp: httpx.Response) -> str:
        """The body, decoded under :data:`MAX_RESPONSE_BYTES` (an error's under :data:`_ERROR_BODY_BYTES`) as it
        streams: a larger one, or one compressed past that, is an error, not a read into memory."""
        cap = MAX_RESPONSE_BYTES if resp.status_code == 200 else _ERROR_BODY_BYTES
        try:
            raw, over = await read_decoded(resp, cap)
        except DecodingError as e:
            raise BackendConnectionError(redact(f"{self.url} sent a body that cannot be decoded: {e}"),
                                         status_code=resp.status_code) from None
        if over and resp.status_code == 200:
            raise BackendConnectionError(
                f"{self.url} answered more than {cap:,} bytes (decoded) for one completion; read no further",
                status_code=200, hint="lower max_tokens, or check that base_url is an OpenAI-compatible server")
        return raw.decode("utf-8", "replace")

    async def _post_once(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._client().stream("POST", self.url, json=body,
                                             headers={"Accept-Encoding": ACCEPT_ENCODING}) as resp:
                status, headers = resp.status_code, resp.headers
                text = await self._read(resp)
        except httpx.TimeoutException as e:
            raise self._timeout_error(e) from None
        except httpx.TransportError as e:
            raise self._transport_error(e) from None
        if status != 200:
            self._raise_for_status(status, headers, text)
        try:
            data = json.loads(text)
        except ValueError:
            raise BackendConnectionError(
                redact(f"{self.url} answered HTTP 200 with a body that is not JSON: {_short(text)}"),
                status_code=200) from None
        return _completion(data, self.url)

    async def _stream_once(self, body: dict[str, Any], builder: TurnBuilder) -> AsyncIterator[tuple[str, str]]:
        """Yield ("text" | "reasoning", piece) as SSE events arrive; fill ``builder``."""
        events = 0
        done = False
        try:
            async with self._client().stream("POST", self.url, json=body,
                                             headers={"Accept": "text/event-stream",
                                                      "Accept-Encoding": ACCEPT_ENCODING}) as resp:
                if resp.status_code != 200:
                    text = await self._read(resp)
                    self._raise_for_status(resp.status_code, resp.headers, text)
                if resp.headers.get("content-type", "").startswith("application/json"):
                    # a server that ignores "stream": true and answers with the whole completion
                    body_text = await self._read(resp)
                    data = _completion(_json_or_text(body_text), self.url)
                    text, reasoning = builder.add_delta(data["choices"][0].get("message") or {})
                    builder.finish = data["choices"][0].get("finish_reason") or "stop"
                    builder.add_usage(data.get("usage"))
                    for kind, piece in (("reasoning", reasoning), ("text", text)):
                        if piece:
                            yield kind, piece
                    return
                async for line in aiter_decoded_lines(resp, MAX_STREAM_BYTES, MAX_EVENT_CHARS):
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, "event:" names
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(payload)
                    except ValueError:
                        raise BackendConnectionError(
                            redact(f"{self.url} sent a stream event that is not JSON: {_short(payload)}")) from None
                    if "error" in chunk and not chunk.get("choices"):
                        why = _error_text(chunk)
                        msg = redact(f"{self.url} failed mid-stream: {_short(why)}")
                        if not events and any(w in why.lower() for w in _NO_STREAM_WORDS):
                            raise _CannotStream(msg)
                        raise BackendConnectionError(msg)
                    events += 1
                    builder.add_usage(chunk.get("usage"))
                    for choice in chunk.get("choices") or []:
                        if choice.get("index", 0) != 0:
                            continue
                        text, reasoning = builder.add_delta(choice.get("delta") or {})
                        builder.finish = choice.get("finish_reason") or builder.finish
                        if reasoning:
                            yield "reasoning", reasoning
                        if text:
                            yield "text", text
        except httpx.TimeoutException as e:
            raise self._timeout_error(e, events) from None
        except httpx.TransportError as e:
            raise self._transport_error(e, events) from None
        except (BodyTooLarge, DecodingError) as e:
            raise BackendConnectionError(
                redact(f"the stream from {self.url} after {events} event(s): {e}; read no further"),
                hint="check that base_url is an OpenAI-compatible server; lower max_tokens") from None
        if not done and builder.finish is None and not events and body.get("tools"):
            # llama-cpp-python answers a streamed request with tools it cannot stream by 200 and an empty stream
            # (the error stays in its log): the same case as an in-band "cannot stream" error
            raise _CannotStream(redact(f"{self.url} answered a streamed request with tools by an empty stream"))
        if not done and builder.finish is None:
            raise TransientError(redact(
                f"the stream from {self.url} was cut after {events} event(s): the connection closed before "
                "the server sent a finish_reason or [DONE]"))

    # -- errors ----------------------------------------------------------------------------------------------

    def _raise_for_status(self, status: int, headers: httpx.Headers, text: str) -> None:
        # redact before cutting, so a secret past the cut cannot survive as a fragment
        detail = _short(redact(_error_text(_json_or_text(text))))
        msg = redact(f"{self.url} answered HTTP {status} for model {self.model!r}: {detail}")
        if status >= 500 and status not in _RETRY_STATUS and _blames_request(detail):
            raise BackendConnectionError(
                msg, status_code=status,
                hint="the server failed on this request itself (not retried: the same request fails the same "
                     "way); the message above says what it could not take")
        if status in _RETRY_STATUS or status >= 500:
            raise TransientError(msg, kind="rate_limited" if status == 429 else "server_error", status_code=status,
                                 retry_after=parse_retry_after(headers.get("retry-after")))
        if status == 400 and any(w in detail.lower() for w in _CONTEXT_WORDS):
            raise ContextWindowError(msg, hint="shorten the conversation or raise the server's context length")
        hints = {401: "check the API key (api_key= or OPENAI_API_KEY)", 403: "check the API key and its rights",
                 404: "check base_url (the API root, usually ending in /v1) and the model name"}
        raise BackendConnectionError(msg, status_code=status, hint=hints.get(status))

    def _timeout_error(self, e: httpx.TimeoutException, events: int | None = None) -> TransientError:
        where = "" if events is None else f" after {events} stream event(s)"
        return TransientError(redact(
            f"{self.url} did not answer within the {self.timeout:g} s timeout{where} ({type(e).__name__})"),
            kind="timeout", hint="raise timeout= for long generations, or check that the server is up")

    def _transport_error(self, e: httpx.TransportError, events: int | None = None) -> TransientError:
        if events:
            return TransientError(redact(
                f"the stream from {self.url} was cut after {events} event(s): {type(e).__name__}: {e}"))
        return TransientError(redact(f"cannot reach {self.url}: {type(e).__name__}: {e}"),
                              hint="check that the server is running and base_url is right")


class _CannotStream(Exception):
    """The server took a streamed request and then said, in band, that it cannot stream it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _blames_request(detail: str) -> bool:
    low = detail.lower()
    return any(w in low for w in _REQUEST_FAULT_WORDS)


def _completion(data: Any, url: str) -> dict[str, Any]:
    """A chat.completion body checked for the one thing we need: a first choice that is an object."""
    if isinstance(data, dict) and "error" in data and "choices" not in data:
        raise BackendConnectionError(redact(f"{url} answered with an error: {_short(_error_text(data))}"))
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise BackendConnectionError(redact(f"{url} answered without choices: {_short(json.dumps(data))}"))
    return data


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error_text(data: Any) -> str:
    """The message of an OpenAI-style error body ({"error": {"message": ...}}), a validation error's list of
    problems (FastAPI's ``{"detail": [{"loc": [...], "msg": ...}, ...]}``, one ``path: message`` each), or the
    body itself."""
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            detail = err.get("detail")
            if isinstance(detail, list) and detail:
                return _problems(detail)
            return str(err.get("message") or detail or json.dumps(err))
        return str(err)
    return str(data)


def _problems(items: list[Any]) -> str:
    out = []
    for item in items:
        if isinstance(item, dict):
            loc = ".".join(str(x) for x in item.get("loc") or [])
            out.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
        else:
            out.append(str(item))
    return f"{len(out)} problem(s): " + "; ".join(out)


def _short(text: str, limit: int = ERROR_DETAIL_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
