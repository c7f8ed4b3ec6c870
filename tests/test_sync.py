"""run_sync, the sync face of the async API: one event loop per thread, kept between calls, never shared with a
forked child (which shares the loop's epoll instance and self-pipe with its parent)."""

from __future__ import annotations

import asyncio
import atexit
import os
import time

import pytest

from keye_agent._sync import run_sync
from keye_agent.tools import Tool, ToolRegistry
from keye_agent.types import ToolCall


async def _loop_id() -> int:
    return id(asyncio.get_running_loop())


def test_the_loop_is_kept_between_calls_and_what_a_call_leaves_is_cancelled() -> None:
    started: list[asyncio.Task] = []

    async def leaves_a_task() -> int:
        started.append(asyncio.get_running_loop().create_task(asyncio.sleep(3600)))
        return id(asyncio.get_running_loop())

    first = run_sync(leaves_a_task())
    assert run_sync(_loop_id()) == first
    assert started[0].cancelled()


def _slow(x: int) -> int:
    time.sleep(0.05)  # past the registry's eager wait: the result comes back through the loop's self-pipe
    return x


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_leaves_the_parents_loop_awake() -> None:
    """Before: the child reused the parent's loop and closed it at exit, unregistering the shared self-pipe from
    the shared epoll instance; the parent's loop then never woke for a worker's result (a hang)."""
    reg = ToolRegistry([Tool(name="slow", description="d", fn=_slow,
                             parameters={"type": "object", "properties": {"x": {"type": "integer"}}})])
    call = ToolCall(id="c", name="slow", arguments={"x": 1})
    assert reg.dispatch_sync([call])[0].ok  # the parent's loop exists now
    parent_loop = run_sync(_loop_id())
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child_loop = run_sync(_loop_id())
            ok = reg.dispatch_sync([call])[0].ok  # the pool starts empty in the child: no phantom idle worker
            code = 0 if ok and child_loop != parent_loop else 3
            atexit._run_exitfuncs()  # what the child's exit runs: the finalizers of the loops it inherited
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [r.ok for r in reg.dispatch_sync([call, call])] == [True, True]
