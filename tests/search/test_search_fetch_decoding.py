"""fetch_url under stacked compression (issue 24 item 7): the download cap holds on decoded bytes as they stream,
for every ``Content-Encoding`` layer, from a real server on a loopback port (tests/tools/loopback.py)."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler

from keye_agent.search import Fetcher
from keye_agent.tools.netguard import NetPolicy
from tests.tools.loopback import reply, serve

CAP = 1_000_000


def _double_gzip_bomb() -> bytes:
    """256 MiB of spaces under two gzip layers: ~250 KB after the outer one, a few KB on the wire."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    spaces = b" " * (1 << 20)
    layer = b"".join([*(inner.compress(spaces) for _ in range(256)), inner.flush()])
    return gzip.compress(layer, 9)


def test_a_double_gzip_bomb_stops_at_the_cap_with_little_memory() -> None:
    bomb = _double_gzip_bomb()
    assert len(bomb) < 10_000

    def bombed(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, bomb, {"Content-Type": "text/plain", "Content-Encoding": "gzip, gzip"})

    def fine(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, gzip.compress(gzip.compress(b"hello " * 100)),
              {"Content-Type": "text/plain", "Content-Encoding": "gzip, gzip"})

    seen: list[str] = []
    with serve({"/bomb": bombed, "/fine": fine}, seen) as base:
        fetcher = Fetcher(NetPolicy(allow_loopback=True), max_bytes=CAP, timeout_s=30)
        tracemalloc.start()
        try:
            page = asyncio.run(fetcher.fetch(f"{base}/bomb"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        ok = asyncio.run(fetcher.fetch(f"{base}/fine"))
    assert page.truncated_bytes and page.bytes_read == CAP
    assert peak < 32 * 2**20, f"peak {peak:,} bytes"  # httpx's own decoder held the whole 256 MiB layer
    assert ok.text.strip() == ("hello " * 100).strip() and not ok.truncated_bytes


def test_an_image_url_behind_a_compression_bomb_stops_at_the_media_cap(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The local backends' image download reads through the same capped decoder."""
    from keye_agent.backends import _media
    from keye_agent.errors import MediaError
    from keye_agent.types import ImagePart

    bomb = _double_gzip_bomb()
    monkeypatch.setattr(_media, "MAX_FETCH_BYTES", CAP)

    def bombed(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, bomb, {"Content-Type": "image/png", "Content-Encoding": "gzip, gzip"})

    with serve({"/cat.png": bombed}) as base:
        item = _media.MediaItem("image", ImagePart(url=f"{base}/cat.png"))
        tracemalloc.start()
        try:
            try:
                asyncio.run(_media.fetch_media([item], NetPolicy(allow_loopback=True)))
            except MediaError as e:
                assert f"more than {CAP} bytes" in str(e)
            else:
                raise AssertionError("the bomb was read whole")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 32 * 2**20, f"peak {peak:,} bytes"


def test_a_searxng_answer_is_read_under_its_cap_too() -> None:
    """A SearXNG instance (the user's own, so not behind the address guard) that sends a compression bomb gets a
    SearchError with the figure; httpx's own decoder held the whole 256 MiB layer before."""
    from keye_agent.errors import SearchError
    from keye_agent.search.searxng import MAX_RESPONSE_BYTES, SearxngBackend

    bomb = _double_gzip_bomb()

    def bombed(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"})

    error: SearchError | None = None
    with serve({"/search": bombed}) as base:
        tracemalloc.start()
        try:
            try:
                SearxngBackend(base).search("python")
            except SearchError as e:
                error = e
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert error is not None and f"more than {MAX_RESPONSE_BYTES:,} bytes" in str(error), error
    assert peak < 3 * MAX_RESPONSE_BYTES, f"peak {peak:,} bytes"
