"""`RunHandle`: a run started with :meth:`Agent.start`, to read its events, wait for its result or cancel it alone.

Inside a running event loop the run is a task of that loop::

    handle = agent.start("Which airport is OSL?", max_steps=5)
    async for ev in handle.events():   # optional: every event is kept until read
        print(ev)
    result = await handle              # the RunResult
    handle.cancel()                    # this run only; safe from another thread or a signal handler

Outside an event loop the run goes on a thread of its own; the same handle reads it from sync code::

    handle = agent.start("Which airport is OSL?")
    for ev in handle:                  # optional
        print(ev)
    result = handle.result(timeout=60)
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from keye_agent._sync import run_sync
from keye_agent.errors import KeyeAgentError
from keye_agent.types import RunResult

from .events import Event
from .run import Run

_END = object()


class RunHandle:
    """A started run. Made by :meth:`Agent.start`."""

    def __init__(self, run: Run) -> None:
        self.run = run
        """The run's state (its trajectory so far, its usage)."""
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._aqueue: asyncio.Queue[Any] | None = None
        self._squeue: queue.SimpleQueue[Any] | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        if loop is not None:
            self._aqueue = asyncio.Queue()
            self._task: asyncio.Task[RunResult] | None = loop.create_task(self._drive())
        else:
            self._task = None
            self._squeue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._drive_in_thread, name="keye-run", daemon=True)
            self._thread.start()

    async def _drive(self) -> RunResult:
        put = self._aqueue.put_nowait if self._aqueue is not None else self._squeue.put  # type: ignore[union-attr]
        try:
            async for ev in self.run.events():
                put(ev)
        except BaseException as e:
            self._error = e
            raise
        finally:
            put(_END)
            self._done.set()
        assert self.run.result is not None
        self._result = self.run.result
        return self._result

    def _drive_in_thread(self) -> None:
        try:
            run_sync(self._drive())
        except BaseException:  # noqa: BLE001 - kept in self._error, raised by result()
            pass

    def cancel(self) -> None:
        """Stop this run (the agent's other runs go on); it ends with status ``cancelled``."""
        self.run.cancel()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> RunResult:
        """The run's result. A run on its own thread is waited for (up to ``timeout`` seconds); a run in an event
        loop must be finished (``await handle`` there instead)."""
        if self._thread is not None:
            if not self._done.wait(timeout):
                raise TimeoutError(f"the run did not finish within {timeout:g} s")
            self._thread.join()
        elif not self._done.is_set():
            raise KeyeAgentError("the run is still going", hint="`await handle` inside its event loop")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __await__(self) -> Generator[Any, None, RunResult]:
        if self._task is None:
            raise KeyeAgentError("this run was started outside an event loop", hint="use handle.result()")
        return self._task.__await__()

    async def events(self) -> AsyncIterator[Event]:
        """The run's events as they happen (the last is ``RunFinished``); read them once."""
        if self._aqueue is None:
            raise KeyeAgentError("this run was started outside an event loop", hint="iterate the handle instead")
        while (ev := await self._aqueue.get()) is not _END:
            yield ev

    def __iter__(self) -> Iterator[Event]:
        """The events of a run on its own thread, as they happen."""
        if self._squeue is None:
            raise KeyeAgentError("this run was started in an event loop", hint="use `async for ev in handle.events()`")
        while (ev := self._squeue.get()) is not _END:
            yield ev
