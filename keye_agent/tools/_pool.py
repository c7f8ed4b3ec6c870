"""The worker pool of sync tools: warm daemon threads, one per call in flight.

`concurrent.futures.ThreadPoolExecutor` joins its workers when the interpreter exits, so a sync tool that ignored
its timeout (a thread cannot be killed) would keep the whole process alive after the run ended. These workers are
daemon threads: what they still run when the program ends is abandoned, as the timeout already said it was.

Workers stay warm between calls (no thread start per call). Each submit claims an idle worker or starts a new one
(up to ``max_workers``), so a burst of N parallel calls runs on N workers at once, however many are idle already;
past ``max_workers`` calls wait in order for the next free worker.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

# (the loop to answer on, or None for a concurrent Future; the future; the function; its args and kwargs)
_Work = tuple["asyncio.AbstractEventLoop | None", Any, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def _resolve(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():  # cancelled or timed out meanwhile: the result is dropped, as the caller was told
        return
    if error is None:
        fut.set_result(value)
    elif isinstance(error, StopIteration):  # a future refuses it (it would end the awaiting coroutine)
        fut.set_exception(RuntimeError(f"the tool raised StopIteration: {error}"))
    else:
        fut.set_exception(error)


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

    @property
    def workers(self) -> int:
        """Threads started so far (they stay for the life of the process)."""
        return self._threads

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self._put((None, fut, fn, args, kwargs))
        return fut

    def run_async(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run ``fn`` on a worker; the result comes back on the running loop's future (no concurrent Future in
        between: one wake-up of the loop per call). Cancelling the future before a worker starts skips the call."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._put((loop, fut, fn, args, kwargs))
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
        get, lock = self._queue.get, self._lock
        while True:
            loop, fut, fn, args, kwargs = get()
            value = error = None
            if loop is None:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args, **kwargs))
                    except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
                        fut.set_exception(e)
            elif not fut.done():
                try:
                    value = fn(*args, **kwargs)
                except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
                    value, error = None, e
                try:
                    loop.call_soon_threadsafe(_resolve, fut, value, error)
                except RuntimeError:  # the loop closed meanwhile: nobody waits for this result
                    pass
            del loop, fut, fn, args, kwargs, value, error  # an idle worker keeps nothing of its last call alive
            with lock:
                if self._backlog:
                    self._backlog -= 1  # take a waiting item: this worker stays claimed
                else:
                    self._idle += 1
