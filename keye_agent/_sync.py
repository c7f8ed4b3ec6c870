"""Running the async API from sync code."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's loop for sync calls, made at the first one and kept (a new loop per call, what asyncio.run
    does, is made and torn down every time, a fixed cost on every planner run). Closed when the thread's
    object goes, or at exit, by the process that made it: a forked child shares the loop's epoll instance and
    self-pipe with its parent, so it makes its own and leaves the inherited one untouched (closing it there would
    unregister the parent's self-pipe and the parent's loop would never wake for a worker's result again)."""
    loop = getattr(_local, "loop", None)
    pid = os.getpid()
    if loop is None or loop.is_closed() or _local.pid != pid:
        loop = asyncio.new_event_loop()
        _local.loop, _local.pid = loop, pid
        weakref.finalize(threading.current_thread(), _close_in, pid, loop)
    return loop


def _close_in(pid: int, loop: asyncio.AbstractEventLoop) -> None:
    if os.getpid() == pid and not loop.is_closed():
        loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code; refuses to nest inside a running loop (use the async API there).

    A plain event loop rather than ``asyncio.run``: the latter's SIGINT handling formats the finished task's repr
    on Python 3.11, which costs time proportional to the size of the result (a long trajectory). The loop stays for
    the thread's next call; what a call leaves behind does not: its pending tasks are cancelled and awaited before
    it returns, and an async generator it left open is closed with the loop, as asyncio.run would.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError("called a sync keye-agent API inside a running event loop; await the async variant instead")
    loop = _thread_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            if getattr(loop, "_asyncgens", True):  # an async generator still open (or no way to tell): close it
                loop.run_until_complete(loop.shutdown_asyncgens())  # as asyncio.run does; the loop is done with
                loop.close()
        except BaseException:  # the loop is in no state to keep (an interrupt mid-cleanup): the next call makes one
            loop.close()
            raise
