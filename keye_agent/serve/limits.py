"""What the server admits: a request body up to a size (413 past it), and at most ``max_queue`` requests at once,
generating or waiting for the model (429 with Retry-After past it). Past admission the backend decides what runs
together: a local backend serves one request at a time under its lock, a batching one runs many in each step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from keye_agent.errors import RequestError


class Ticket:
    """One admitted request; :meth:`release` (idempotent) when its answer is sent or abandoned."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            self._admission.active -= 1
            self._admission.served += 1
            self._admission = None


class Admission:
    """Counts the requests in flight; :meth:`admit` refuses one past ``max_queue`` with a 429."""

    def __init__(self, max_queue: int, retry_after_s: float = 1.0) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.active = 0
        """Requests admitted and not finished (generating, or waiting for the model)."""
        self.peak = 0
        """The most requests that were in flight at once."""
        self.served = 0
        self.refused = 0

    def admit(self) -> Ticket:
        # the event loop is single-threaded and nothing awaits between the check and the count: no lock needed
        if self.active >= self.max_queue:
            self.refused += 1
            raise RequestError(f"the server is busy: {self.active} requests are in flight, the most it queues "
                               f"(--max-queue {self.max_queue}); retry after {self.retry_after_s:g} s",
                               status=429, error_type="rate_limit_error", code="rate_limit_exceeded",
                               retry_after=self.retry_after_s)
        self.active += 1
        self.peak = max(self.peak, self.active)
        return Ticket(self)


async def read_body(stream: AsyncIterator[bytes], content_length: Any, limit: int) -> bytes:
    """The request body, refused with a 413 once it passes ``limit`` bytes (by its Content-Length, or as it
    arrives when it has none or lies)."""
    too_big = RequestError(f"the request body is over the limit of {limit} bytes ({limit / 2**20:g} MiB)",
                           status=413, code="request_too_large",
                           hint="send images as URLs, or start the server with a larger --max-body-mb")
    try:
        if content_length is not None and int(content_length) > limit:
            raise too_big
    except ValueError:
        raise RequestError("the Content-Length header is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)
