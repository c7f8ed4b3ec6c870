"""A thread-safe rate limiter: at most one request per ``min_interval_s``, callers wait their turn.

Search tools run in worker threads, and a model often fires several searches in one turn; public engines answer a
burst with a block, so requests are spaced out here rather than retried there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Spaces calls at least ``min_interval_s`` apart (slots are reserved in order, so waiting is fair).

    Example::

        limiter = RateLimiter(1.0)
        limiter.acquire()  # returns at once the first time, then ~1 s apart
    """

    def __init__(
        self,
        min_interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s must be >= 0, got {min_interval_s}")
        self.min_interval_s = float(min_interval_s)
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for this caller's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.min_interval_s
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return wait

    def penalise(self, seconds: float) -> None:
        """Push the next slot back (after the service said "slow down"), so other threads back off too."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)
