"""One request through the backend's ``astream``: a whole answer or an SSE stream, and what ends it early.

A client that disconnects cancels its generation: the backend's stream is closed (a local backend then sets its
cancel event, and its worker stops at the next token). A whole answer watches the connection while it waits; a
stream is watched by Starlette, and cleaned up by :class:`EventStream` however it ends, even before it began.

Errors the backend raises before it first waits (a prompt over the context window, a bad setting) are HTTP
errors; once a stream has begun they are an event holding the error object, then ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from keye_agent.errors import (
    BackendConnectionError,
    ConfigError,
    ContextWindowError,
    MediaError,
    ModelError,
    RequestError,
)
from keye_agent.types import AssistantTurn, ModelBackend, StreamChunk

from .limits import Ticket
from .request import ChatRequest
from .response import Completion, internal_error, stream_error

log = logging.getLogger(__name__)


def as_request_error(e: BaseException) -> RequestError:
    """What the client is told of a failure: its own faults as 400s, an upstream server's as 502, the rest 500."""
    if isinstance(e, RequestError):
        return e
    message = e.args[0] if e.args else str(e)
    hint = getattr(e, "hint", None)
    if isinstance(e, ContextWindowError):
        return RequestError(message, param="messages", code="context_length_exceeded", hint=hint)
    if isinstance(e, MediaError):
        return RequestError(message, param="messages", code="invalid_image", hint=hint)
    if isinstance(e, ConfigError):
        return RequestError(message, hint=hint)
    if isinstance(e, BackendConnectionError):
        return RequestError(message, status=502, error_type="server_error", code="upstream_error", hint=hint)
    if isinstance(e, ModelError):
        return RequestError(message, status=500, error_type="server_error", code="model_error", hint=hint)
    log.error("generation failed", exc_info=e)
    return internal_error(e)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def whole(backend: ModelBackend, req: ChatRequest, receive: Receive) -> tuple[AssistantTurn, str] | None:
    """The finished turn and its text as streamed, or None when the client went away first (its generation is
    then cancelled)."""
    async def drain() -> tuple[AssistantTurn, str]:
        turn = None
        text: list[str] = []
        stream = backend.astream(req.messages, req.tools, req.settings)
        try:
            async for chunk in stream:
                if chunk.kind == "done":
                    turn = chunk.turn
                elif chunk.kind == "text":
                    text.append(chunk.text)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if turn is None:
            raise ModelError(f"backend {backend.name!r} ended its stream without a final turn")
        return turn, "".join(text)

    work = asyncio.ensure_future(drain())
    gone = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (gone, work):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if not work.done() or work.cancelled():
        log.info("client disconnected; generation cancelled")
        return None
    return work.result()


class EventStream(StreamingResponse):
    """The SSE answer of a streamed request. Built with :meth:`start`, which raises the errors the backend finds
    before it first waits; the stream is closed and the ticket released however the response ends."""

    def __init__(self, stream: AsyncIterator[StreamChunk], first: asyncio.Future[StreamChunk], req: ChatRequest,
                 completion: Completion, ticket: Ticket) -> None:
        self._stream, self._first, self._ticket = stream, first, ticket
        super().__init__(self._events(req, completion), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @classmethod
    async def start(cls, backend: ModelBackend, req: ChatRequest, completion: Completion,
                    ticket: Ticket) -> EventStream:
        stream = backend.astream(req.messages, req.tools, req.settings)
        first = asyncio.ensure_future(stream.__anext__())
        # one turn of the loop: the backend runs up to its first wait (a local one renders, counts and checks the
        # prompt first), so a request it refuses gets a status code rather than a stream holding an error
        await asyncio.sleep(0)
        if first.done() and not first.cancelled() and first.exception() is not None:
            raise as_request_error(first.exception())  # type: ignore[arg-type]
        return cls(stream, first, req, completion, ticket)

    async def _events(self, req: ChatRequest, completion: Completion) -> AsyncIterator[bytes]:
        usage = req.include_usage
        yield completion.chunk({"role": "assistant", "content": ""}, usage=usage)
        streamed: list[str] = []
        try:
            chunk = await self._first
            while True:
                if chunk.kind == "done":
                    assert chunk.turn is not None
                    for event in completion.ending(chunk.turn, "".join(streamed), usage):
                        yield event
                    return
                if chunk.text:
                    key = "content" if chunk.kind == "text" else "reasoning_content"
                    if chunk.kind == "text":
                        streamed.append(chunk.text)
                    yield completion.chunk({key: chunk.text}, usage=usage)
                chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            for event in stream_error(as_request_error(ModelError("the backend ended its stream without a turn"))):
                yield event
        except Exception as e:  # noqa: BLE001 - every failure becomes the error event; as_request_error logs bugs
            for event in stream_error(as_request_error(e)):
                yield event

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the generation (if it still runs) and release the request's place in the queue."""
        try:
            if not self._first.done():
                self._first.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._first
            await self._stream.aclose()  # type: ignore[attr-defined]
        finally:
            self._ticket.release()

