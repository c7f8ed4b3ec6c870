"""Reading a response body with a cap on its decoded size that holds while it streams, for every encoding layer.

httpx decodes each raw chunk in one call, so 1 KB of ``Content-Encoding: gzip, gzip`` becomes 1 MB, then 1 GB, in
memory before any cap on the decoded bytes can look at it. Here the raw bytes are decoded layer by layer in slices
of at most 64 KB (zlib's ``max_length``), lazily, and every layer counts what it produced: a layer past the cap
stops the read at once. Only gzip and deflate are decoded (what :data:`ACCEPT_ENCODING` asks for); a server that
sends another encoding gets a :class:`DecodingError`.
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections.abc import AsyncIterator, Iterator

import httpx

__all__ = ["ACCEPT_ENCODING", "BodyTooLarge", "DecodingError", "aiter_decoded_lines", "read_decoded", "read_decoded_sync"]

ACCEPT_ENCODING = "gzip, deflate"
_SLICE = 64 * 1024


class DecodingError(ValueError):
    """A body that cannot be decoded: an unsupported ``Content-Encoding`` or corrupt compressed data."""


class _Over(Exception):
    pass


class _Layer:
    """One ``Content-Encoding`` step, producing at most ``limit`` bytes in all."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding, self.limit, self.produced = encoding, limit, 0
        if encoding in ("gzip", "x-gzip"):
            self.d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self.d = zlib.decompressobj()  # zlib-wrapped, as RFC 9110 says; raw deflate tried on failure
        else:
            raise DecodingError(f"the response uses Content-Encoding {encoding!r}, which this tool cannot decode; "
                                f"it asks for {ACCEPT_ENCODING}")
        self.started = False

    def _out(self, data: bytes) -> bytes:
        self.produced += len(data)
        if self.produced > self.limit:
            raise _Over
        return data

    def _decompress(self, data: bytes) -> bytes:
        try:
            return self.d.decompress(data, _SLICE)
        except zlib.error as e:
            if self.encoding == "deflate" and not self.started:  # a server sending raw deflate, as many do
                self.started = True
                self.d = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._decompress(data)
            raise DecodingError(f"the {self.encoding} body is corrupt ({e})") from None

    def feed(self, data: bytes) -> Iterator[bytes]:
        out = self._decompress(data)
        self.started = True
        while True:
            if out:
                yield self._out(out)
            if not self.d.unconsumed_tail:
                return
            out = self._decompress(self.d.unconsumed_tail)

    def finish(self) -> bytes:
        try:
            return self._out(self.d.flush())
        except zlib.error as e:
            raise DecodingError(f"the {self.encoding} body is corrupt ({e})") from None


def _layers(resp: httpx.Response, cap: int) -> list[_Layer]:
    """One layer per listed encoding, in the order applied (so the last is undone first). Each may produce a
    little more than the cap: a layer can be larger than the body it holds (incompressible data), and the last
    layer's excess is cut by the reader."""
    header = resp.headers.get("content-encoding", "")
    names = [e.strip().lower() for e in header.split(",") if e.strip() and e.strip().lower() != "identity"]
    limit = cap + max(_SLICE, cap // 16)
    return [_Layer(n, limit) for n in names]


def _through(data: bytes, layers: list[_Layer], i: int) -> Iterator[bytes]:
    """``data`` decoded by ``layers[i:]`` (the last one first), slice by slice."""
    if i < 0:
        yield data
        return
    for out in layers[i].feed(data):
        yield from _through(out, layers, i - 1)


def _tails(layers: list[_Layer]) -> Iterator[bytes]:
    """What each layer still holds at the end of the body (the outermost first), through the layers below it."""
    for i in range(len(layers) - 1, -1, -1):
        tail = layers[i].finish()
        if tail:
            yield from _through(tail, layers, i - 1)


class _Reader:
    """The decoded body as raw chunks arrive: what both :func:`read_decoded` and :func:`read_decoded_sync` read."""

    def __init__(self, resp: httpx.Response, cap: int) -> None:
        self.layers = _layers(resp, cap)
        self.cap, self.size = cap, 0
        self.chunks: list[bytes] = []

    def _take(self, pieces: Iterator[bytes]) -> bool:
        for piece in pieces:
            room = self.cap - self.size
            if len(piece) > room:
                self.chunks.append(piece[:room])
                return True
            self.chunks.append(piece)
            self.size += len(piece)
        return False

    def feed(self, raw: bytes) -> bool:
        """Take one raw chunk; True once the cap is passed (stop reading)."""
        try:
            return self._take(_through(raw, self.layers, len(self.layers) - 1))
        except _Over:
            return True

    def finish(self) -> bool:
        """What each layer still holds, through the layers below it; True if that passed the cap."""
        try:
            return self._take(_tails(self.layers))
        except _Over:
            return True

    def body(self) -> bytes:
        return b"".join(self.chunks)


async def read_decoded(resp: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """(the first ``cap`` decoded bytes of the body, whether there was more). Stops reading the moment any layer
    produced more than it may; raises :class:`DecodingError` for a body it cannot decode."""
    reader = _Reader(resp, cap)
    async for raw in resp.aiter_raw():
        if reader.feed(raw):
            return reader.body(), True
    over = reader.finish()
    return reader.body(), over


def read_decoded_sync(resp: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """:func:`read_decoded` for a response of a sync ``httpx.Client`` stream."""
    reader = _Reader(resp, cap)
    for raw in resp.iter_raw():
        if reader.feed(raw):
            return reader.body(), True
    over = reader.finish()
    return reader.body(), over


class BodyTooLarge(ValueError):
    """A streamed body, or one line of it, passed its cap on decoded bytes."""


_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


async def aiter_decoded_lines(resp: httpx.Response, cap: int, max_line: int) -> AsyncIterator[str]:
    """The body's lines as they arrive (split as ``str.splitlines`` splits, as httpx's ``aiter_lines`` does, line
    ends removed), decoded layer by layer under ``cap`` bytes in all and ``max_line`` characters a line: past
    either, :class:`BodyTooLarge` at once, before the rest is decoded."""
    layers = _layers(resp, cap)
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending: list[str] = []  # the pieces of a line not ended yet
    pending_len = 0
    size = 0

    def lines_of(piece: bytes, final: bool = False) -> list[str]:
        nonlocal pending_len, size
        size += len(piece)
        if size > cap:
            raise BodyTooLarge(f"the body passed {cap:,} bytes (decoded)")
        new = text.decode(piece, final)
        if not final and not _BREAKS.search(new):  # no line end in it: the line grows, nothing is split
            pending.append(new)
            pending_len += len(new)
            if pending_len > max_line:
                raise BodyTooLarge(f"one line passed {max_line:,} characters")
            return []
        parts = ("".join(pending) + new).splitlines(keepends=True)
        pending.clear()
        pending_len = 0
        if parts and not final and (not _BREAKS.search(parts[-1][-1]) or parts[-1].endswith("\r")):
            last = parts.pop()  # no line end yet, or a CR whose LF may come in the next piece
            pending.append(last)
            pending_len = len(last)
            if pending_len > max_line:
                raise BodyTooLarge(f"one line passed {max_line:,} characters")
        return [p.rstrip("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029") for p in parts]

    try:
        async for raw in resp.aiter_raw():
            for piece in _through(raw, layers, len(layers) - 1):
                for line in lines_of(piece):
                    yield line
        for piece in _tails(layers):
            for line in lines_of(piece):
                yield line
        for line in lines_of(b"", final=True):
            yield line
    except _Over:
        raise BodyTooLarge(f"the body passed {cap:,} bytes (decoded)") from None
