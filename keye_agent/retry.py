"""One home for retrying transient faults: backoff, Retry-After, caps and deadlines.

Every caller that retries (the tool registry, the OpenAI-compatible backend, HTTP tools through the registry, the
ddgs and SearXNG search backends, fetch_url through the registry) decides here how long to wait and when to stop:

* the wait after failed attempt ``n`` (1-based) is ``min(max_s, base_s * 2**(n-1))``, of which a random part up to
  ``jitter`` is taken off, so clients that failed together do not retry in lockstep;
* a server's ``Retry-After`` (seconds or an HTTP date, :func:`parse_retry_after`) replaces that wait: the server
  knows when it will take requests again;
* a wait is never longer than ``max_retry_after_s``, and never ends past the retried call's deadline: when the
  server asks for longer, the call gives up at once (the error says what the server asked), rather than sleeping
  past the point where its caller stopped listening or retrying before the server is ready.

What counts as transient is :func:`is_transient`: a :class:`~keye_agent.errors.TransientError`, a tool's
``ToolExecutionError(transient=True)`` or a ``ToolTimeoutError``. Only :mod:`keye_agent.errors` is imported, so every
layer may use this module.

Example::

    retrier = Retrier(Backoff(base_s=0.5, max_s=8.0), attempts=3, deadline_s=20.0)
    data = await retrier.arun(fetch_once)   # raises the last error once retries cannot help
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TypeVar

from keye_agent.errors import ToolExecutionError, ToolTimeoutError, TransientError

__all__ = ["Backoff", "Retrier", "is_transient", "parse_retry_after"]

T = TypeVar("T")
OnRetry = Callable[[BaseException, float, int], None]
"""Called before each wait with (the error, the seconds about to be waited, the attempt number that failed)."""


def parse_retry_after(value: str | float | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (``"12"``, ``"0.5"``) or an HTTP date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``, counted from ``now``, the Unix time, default the clock). None when the
    header is absent or unreadable; never negative."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable, not "now"
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a date without a zone is read as such
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_transient(exc: BaseException) -> bool:
    """A fault a retry may fix: a TransientError, a ToolExecutionError marked transient, or a tool timeout."""
    if isinstance(exc, TransientError | ToolTimeoutError):
        return True
    return isinstance(exc, ToolExecutionError) and exc.transient


@dataclass(frozen=True)
class Backoff:
    """How long to wait between attempts.

    Args:
        base_s: the wait after the first failure; it doubles per attempt.
        max_s: the longest backoff (before jitter).
        max_retry_after_s: the longest wait a server's Retry-After may ask for; a longer ask ends the retries.
        jitter: the fraction of each backoff drawn at random (0: exact waits; 0.5: between half and all of it).
    """

    base_s: float = 0.5
    max_s: float = 8.0
    max_retry_after_s: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.max_s < 0 or self.max_retry_after_s < 0:
            raise ValueError(f"backoff times must be >= 0, got {self}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based), before any deadline applies."""
        if retry_after is not None:
            return max(0.0, float(retry_after))
        wait = min(self.max_s, self.base_s * 2.0 ** (max(attempt, 1) - 1))
        draw = (rng or random).random()
        return wait * (1.0 - self.jitter * draw)


class Retrier:
    """The retry state of one call: how many attempts were made, what was waited, and why it stopped.

    Args:
        backoff: the waits.
        attempts: attempts in all, the first included (1: never retry).
        deadline_s: the call's own budget in seconds, counted from this object's creation (the first attempt's
            start): no wait is taken that would end past it. None: no budget beyond ``attempts``.
        rng: the source of jitter (a seeded ``random.Random`` makes waits reproducible).
        clock: monotonic seconds.
        transient: which errors are worth another attempt.
    """

    def __init__(
        self,
        backoff: Backoff,
        attempts: int,
        *,
        deadline_s: float | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        self.backoff = backoff
        self.max_attempts = max(1, attempts)
        self._clock = clock
        self._deadline = None if deadline_s is None else clock() + max(0.0, deadline_s)
        self.deadline_s = deadline_s
        self._rng = rng
        self._transient = transient
        self.attempts = 1
        """Attempts made so far, the running one included."""
        self.waits: list[float] = []
        self.refused_wait: float | None = None
        """The wait a server asked for that this call would not take (over the cap or past the deadline)."""
        self._refusal = ""

    def next_wait(self, exc: BaseException) -> float | None:
        """Seconds to wait before the next attempt after ``exc``, or None when ``exc`` is final."""
        if not self._transient(exc) or self.attempts >= self.max_attempts:
            return None
        retry_after = parse_retry_after(getattr(exc, "retry_after", None))
        wait = self.backoff.delay(self.attempts, retry_after, self._rng)
        if retry_after is not None and wait > self.backoff.max_retry_after_s:
            self.refused_wait = wait
            self._refusal = f"more than the {self.backoff.max_retry_after_s:g} s this call may wait"
            return None
        if self._deadline is not None and self._clock() + wait > self._deadline:
            if retry_after is not None:
                self.refused_wait = wait
                left = max(0.0, self._deadline - self._clock())
                self._refusal = f"more than the {left:.2g} s left before this call's deadline"
            return None
        self.waits.append(wait)
        self.attempts += 1
        return wait

    def outcome(self) -> str:
        """Why the last error stands, for its message: "" after one plain attempt, else e.g. "after 3 attempts" or
        "not retried: the server asked to wait 30 s, more than the 2 s this call may wait"."""
        if self.refused_wait is not None:
            note = f"not retried: the server asked to wait {self.refused_wait:g} s, {self._refusal}"
            return note if self.attempts == 1 else f"after {self.attempts} attempts; {note}"
        return f"after {self.attempts} attempts" if self.attempts > 1 else ""

    async def arun(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        failed: BaseException | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        on_retry: OnRetry | None = None,
    ) -> T:
        """Await ``fn()`` until it succeeds or its error is final (then raised as it is). ``failed``: the error
        of a first attempt the caller already made (its fast path), so the next call of ``fn`` is a retry."""
        exc = failed
        while True:
            if exc is not None:
                wait = self.next_wait(exc)
                if wait is None:
                    raise exc
                if on_retry is not None:
                    on_retry(exc, wait, self.attempts - 1)
                await sleep(wait)
            try:
                return await fn()
            except Exception as e:  # noqa: BLE001 - next_wait decides; a final error is re-raised unchanged
                exc = e

    def run(
        self,
        fn: Callable[[], T],
        *,
        sleep: Callable[[float], object] = time.sleep,
        on_retry: OnRetry | None = None,
    ) -> T:
        """The blocking twin of :meth:`arun` (search backends run in worker threads)."""
        while True:
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - next_wait decides; a final error is re-raised unchanged
                wait = self.next_wait(e)
                if wait is None:
                    raise
                if on_retry is not None:
                    on_retry(e, wait, self.attempts - 1)
                sleep(wait)
