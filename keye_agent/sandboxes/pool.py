"""`SandboxPool`: keeps a few started sandboxes ready, so handing one out costs a queue pop, not a container start.

A sandbox is used by one session and then closed, never handed out twice: no state crosses from one user to the
next. A background thread refills the pool after each acquire.

Example::

    pool = SandboxPool(size=2)
    with pool.sandbox() as sb:       # ready at once when the pool is warm
        sb.run("print(1)")
    pool.close()
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from keye_agent.errors import SandboxError
from keye_agent.retry import Backoff

from .config import SandboxConfig
from .docker_sandbox import DockerSandbox

# after n failed starts in a row the filler waits 0.5 * 2**n s, up to 30 s (exact: one filler, no crowd to spread)
_REFILL_BACKOFF = Backoff(base_s=0.5, max_s=30.0, jitter=0.0)


class SandboxPool:
    """A warm pool of ``size`` started sandboxes with the same configuration. Thread-safe."""

    def __init__(self, size: int = 2, config: SandboxConfig | None = None, **overrides: Any) -> None:
        if size < 0:
            raise SandboxError(f"pool size must be >= 0, got {size}")
        base = config or SandboxConfig()
        self.config = base.with_(**overrides) if overrides else base
        self.size = size
        self._ready: deque[DockerSandbox] = deque()
        self._starting = 0
        self._cond = threading.Condition()
        self._closed = False
        self.last_error: SandboxError | None = None
        self._failures = 0
        # One long-lived filler thread: acquire() only pops and notifies, it never pays for a thread start.
        threading.Thread(target=self._filler, name="keye-sandbox-pool", daemon=True).start()

    def _filler(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._ready) + self._starting >= self.size:
                    self._cond.wait()
                if self._closed:
                    return
                if self._failures:
                    # Back off after failed starts (a missing image, a stopped engine) instead of spinning.
                    self._cond.wait(_REFILL_BACKOFF.delay(self._failures + 1))
                    if self._closed:
                        return
                self._starting += 1
            threading.Thread(target=self._start_one, name="keye-sandbox-start", daemon=True).start()

    def _start_one(self) -> None:
        sb = DockerSandbox(self.config)
        try:
            sb.start()
        except SandboxError as e:
            with self._cond:
                self._starting -= 1
                self.last_error = e
                self._failures += 1
                self._cond.notify_all()
            return
        with self._cond:
            keep = not self._closed
            if keep:
                self._starting -= 1
                self._failures = 0
                self.last_error = None
                self._ready.append(sb)
                self._cond.notify_all()
        if not keep:
            # the pool closed while this one started: remove it before it stops counting as "starting", so that
            # close() returns only once no container of the pool is left
            try:
                sb.close()
            finally:
                with self._cond:
                    self._starting -= 1
                    self._cond.notify_all()

    def acquire(self, timeout: float | None = None) -> DockerSandbox:
        """A started sandbox; the caller owns it and must close it. Waits for one being started, or starts one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._closed:
                raise SandboxError("the sandbox pool is closed")
            while not self._ready and (self._starting > 0 or (self.size > 0 and self._failures == 0)):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise SandboxError(f"no sandbox became ready within {timeout} s")
                self._cond.wait(left)
            sb = self._ready.popleft() if self._ready else None
            self._cond.notify_all()  # wakes the filler to replace it
        if sb is None:  # pool of size 0, or every start failed: start one here and let its error surface
            sb = DockerSandbox(self.config)
            sb.start()
        return sb

    @contextlib.contextmanager
    def sandbox(self, timeout: float | None = None) -> Iterator[DockerSandbox]:
        """``with pool.sandbox() as sb:``: acquire, and close when the block ends."""
        sb = self.acquire(timeout)
        try:
            yield sb
        finally:
            sb.close()

    @property
    def ready(self) -> int:
        """How many started sandboxes are waiting."""
        with self._cond:
            return len(self._ready)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the pool is full (for benchmarks and start-up). Raises the last start error if one failed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < self.size:
                if self._starting == 0 and self.last_error is not None:
                    raise self.last_error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SandboxError(f"pool did not fill within {timeout} s")
                self._cond.wait(left)

    def close(self, timeout: float = 60.0) -> None:
        """Close the waiting sandboxes, and wait (up to ``timeout`` s) for the ones being started, which close as soon
        as they are up: on return no container of this pool is left. Idempotent."""
        with self._cond:
            self._closed = True
            ready, self._ready = list(self._ready), deque()
            self._cond.notify_all()
        for sb in ready:
            sb.close()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._starting > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
