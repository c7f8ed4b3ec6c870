"""The worker pool of sync tools: warm daemon threads, one per call in flight.

`concurrent.futures.ThreadPoolExecutor` joins its workers when the interpreter exits, so a sync tool that ignored
its timeout (a thread cannot be killed) would keep the whole process alive after the run ended. These workers are
daemon threads: what they still run when the program ends is abandoned, as the timeout already said it was.

Workers stay warm between calls (no thread start per call). Each submit claims an idle worker or starts a new one
(up to ``max_workers``), so a burst of N parallel calls runs on N workers at once, however many are idle already;
past ``max_workers`` calls wait in order for the next free worker.

A short call need not cost the event loop two wake-ups: :meth:`DaemonThreadPool.run_async` with ``eager_s`` lets
the loop's thread wait for the worker up to that long, blocked on a lock (the GIL released), when the loop has
nothing else ready to run; a call that finishes inside the wait comes back as a done future (no trip through the
selector, no self-pipe). A longer one, or one submitted while other callbacks are ready (the calls of one turn,
gathered), is awaited as usual: the loop is never parked past ``eager_s``.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class _Eager:
    """The hand-over of a call whose submitter may still be waiting for it on the loop's thread."""

    __slots__ = ("error", "finished", "mutex", "signal", "value", "waiting")

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.signal = threading.Lock()
        self.signal.acquire()  # released by the worker when it finishes while the submitter still waits
        self.waiting = True
        self.finished = False
        self.value: Any = None
        self.error: BaseException | None = None


# (the loop to answer on, or None for a concurrent Future; the future; the function; its args and kwargs; the
# eager hand-over, or None)
_Work = tuple["asyncio.AbstractEventLoop | None", Any, Callable[..., Any], tuple[Any, ...], dict[str, Any],
              "_Eager | None"]


def _resolve(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():  # cancelled or timed out meanwhile: the result is dropped, as the caller was told
        return
    if error is None:
        fut.set_result(value)
    elif isinstance(error, StopIteration):  # a future refuses it (it would end the awaiting coroutine)
        fut.set_exception(RuntimeError(f"the tool raised StopIteration: {error}"))
    else:
        fut.set_exception(error)


_POOLS: weakref.WeakSet[DaemonThreadPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's worker threads: its pools start empty (else a call would be queued
    for an "idle" worker that does not exist there, and wait forever)."""
    for pool in list(_POOLS):
        pool._reset()


class DaemonThreadPool(Executor):
    def __init__(self, max_workers: int = 32, name: str = "keye-tool") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self._max = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        """Workers waiting for work that no submitted item has claimed yet."""
        self._backlog = 0
        """Items queued with no worker to claim them (all busy, at the limit): the next worker to finish takes one."""
        _POOLS.add(self)

    def _reset(self) -> None:
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = self._idle = self._backlog = 0

    @property
    def workers(self) -> int:
        """Threads started so far (they stay for the life of the process)."""
        return self._threads

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self._put((None, fut, fn, args, kwargs, None))
        return fut

    def run_async(self, fn: Callable[..., Any], /, *args: Any, eager_s: float = 0.0,
                  **kwargs: Any) -> asyncio.Future[Any]:
        """Run ``fn`` on a worker; the result comes back on the running loop's future (no concurrent Future in
        between: one wake-up of the loop per call). Cancelling the future before a worker starts skips the call.

        ``eager_s``: when the loop has no other callback ready, wait up to this long on this thread for the
        result first; the future is then returned done."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        ready = getattr(loop, "_ready", None)  # asyncio's own loops; another loop (uvloop) just awaits
        if eager_s <= 0 or ready is None or ready:
            self._put((loop, fut, fn, args, kwargs, None))
            return fut
        eager = _Eager()
        self._put((loop, fut, fn, args, kwargs, eager))
        eager.signal.acquire(timeout=eager_s)
        with eager.mutex:
            eager.waiting = False
            finished = eager.finished
        if finished:  # the worker handed the result to this thread (and will not answer on the loop)
            _resolve(fut, eager.value, eager.error)
        return fut

    def _put(self, work: _Work) -> None:
        start = False
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif self._threads < self._max:
                self._threads += 1
                start = True
            else:
                self._backlog += 1
        self._queue.put(work)
        if start:
            threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()

    def _work(self) -> None:
        get = self._queue.get
        while True:
            loop, fut, fn, args, kwargs, eager = get()
            value = error = None
            # a concurrent Future is marked running (or found cancelled); a loop's future is skipped if done
            if fut.set_running_or_notify_cancel() if loop is None else not fut.done():
                try:
                    value = fn(*args, **kwargs)
                except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
                    error = e
            self._done()
            if loop is None:
                if error is not None:
                    fut.set_exception(error)
                elif fut.running():
                    fut.set_result(value)
            else:
                waiting = False
                if eager is not None:
                    with eager.mutex:
                        eager.value, eager.error, eager.finished = value, error, True
                        waiting = eager.waiting
                if waiting:  # the submitter still waits on its thread: the result goes to it directly
                    eager.signal.release()
                else:
                    try:
                        loop.call_soon_threadsafe(_resolve, fut, value, error)
                    except RuntimeError:  # the loop closed meanwhile: nobody waits for this result
                        pass
            # the result is out: from here to get() (which lets go of the GIL) as little as possible, so that the
            # thread woken for the result does not wait for this one to finish its bookkeeping
            del loop, fut, fn, args, kwargs, value, error, eager  # an idle worker keeps nothing of its last call

    def _done(self) -> None:
        """This worker is free again (its bookkeeping comes before the result is handed back, not after)."""
        with self._lock:
            if self._backlog:
                self._backlog -= 1  # take a waiting item: this worker stays claimed
            else:
                self._idle += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
