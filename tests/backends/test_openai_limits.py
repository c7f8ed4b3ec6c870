"""What an OpenAI-compatible server can send is read under a cap on decoded bytes that holds as the body streams,
every ``Content-Encoding`` layer counted (as HTTP tools and fetch_url read): a compression bomb, or a completion
larger than any model writes, is an error with the figure, not a read into memory. Real servers on a loopback port
(tests/tools/loopback.py)."""

from __future__ import annotations

import asyncio
import gzip
import json
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler

import pytest

from keye_agent.backends.openai import MAX_RESPONSE_BYTES, OpenAIBackend
from keye_agent.errors import BackendConnectionError
from keye_agent.types import GenerationSettings, Message
from tests.tools.loopback import reply, serve


def _double_gzip(n_mib: int) -> bytes:
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    spaces = b" " * (1 << 20)
    return gzip.compress(b"".join([*(inner.compress(spaces) for _ in range(n_mib)), inner.flush()]), 9)


COMPLETION = {"id": "c", "object": "chat.completion", "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def _backend(base: str, **kw) -> OpenAIBackend:
    return OpenAIBackend("m", base_url=f"{base}/v1", api_key="", max_retries=0, **kw)


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream answered with JSON"])
def test_a_compressed_bomb_from_the_server_stops_at_the_cap(stream: bool) -> None:
    bomb = _double_gzip(256)  # 256 MiB of JSON whitespace under two gzip layers: a few kB on the wire

    def bombed(h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers["Content-Length"]))
        reply(h, 200, bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"})

    with serve({"/v1/chat/completions": bombed}) as base:
        backend = _backend(base, stream=stream)
        tracemalloc.start()
        try:
            with pytest.raises(BackendConnectionError, match=f"more than {MAX_RESPONSE_BYTES:,} bytes"):
                asyncio.run(_collect(backend, stream))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 3 * MAX_RESPONSE_BYTES, f"peak {peak:,} bytes"  # httpx's decoder alone held 256 MiB


def test_a_gzipped_completion_under_the_cap_reads_whole() -> None:
    def fine(h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers["Content-Length"]))
        assert "gzip" in h.headers["Accept-Encoding"] and "br" not in h.headers["Accept-Encoding"]
        reply(h, 200, gzip.compress(json.dumps(COMPLETION).encode()),
              {"Content-Type": "application/json", "Content-Encoding": "gzip"})

    with serve({"/v1/chat/completions": fine}) as base:
        turn = _backend(base, stream=False).generate([Message.user("hi")])
    assert turn.text == "hi"


async def _collect(backend: OpenAIBackend, stream: bool) -> None:
    if not stream:
        await backend.agenerate([Message.user("hi")], None, GenerationSettings())
        return
    async for _ in backend.astream([Message.user("hi")], None, GenerationSettings()):
        pass


def _sse(h: BaseHTTPRequestHandler, body: bytes) -> None:
    h.rfile.read(int(h.headers["Content-Length"]))
    reply(h, 200, gzip.compress(body), {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})


def test_a_streamed_event_past_the_line_cap_stops_the_read() -> None:
    from keye_agent.backends.openai import MAX_EVENT_CHARS

    endless = b"data: " + b"x" * (MAX_EVENT_CHARS + 2**20)  # one event with no line end: 17 MiB, 17 kB gzipped
    with serve({"/v1/chat/completions": lambda h: _sse(h, endless)}) as base:
        with pytest.raises(BackendConnectionError, match=f"one line passed {MAX_EVENT_CHARS:,} characters"):
            asyncio.run(_collect(_backend(base, stream=True), True))


def test_a_gzipped_event_stream_reads_as_a_plain_one() -> None:
    events = [{"id": "c", "object": "chat.completion.chunk", "model": "m",
               "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
              for piece in ("Hel", "lo é", "!")]
    events.append({"id": "c", "object": "chat.completion.chunk", "model": "m",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = "".join(f"data: {json.dumps(e)}\r\n\r\n" for e in events).encode() + b": keep-alive\n\ndata: [DONE]\n\n"
    async def text(backend: OpenAIBackend) -> str:
        return "".join([c.text async for c in backend.astream([Message.user("hi")], None, GenerationSettings())
                        if c.kind == "text"])

    with serve({"/v1/chat/completions": lambda h: _sse(h, body)}) as base:
        assert asyncio.run(text(_backend(base, stream=True))) == "Hello é!"
