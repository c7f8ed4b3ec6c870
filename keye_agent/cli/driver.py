"""The one run driver of the CLI: `run`, `demo` and the REPL's turns all go through :func:`drive_async`.

It starts a run of the agent (:meth:`Agent.new_run`, per-run limits as keywords), feeds each of its events to the
printer and turns Ctrl-C into a cancellation of that run alone (status ``cancelled``). In `run` a second Ctrl-C exits at once; in the REPL every Ctrl-C only cancels the turn, and the
session goes on.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

from keye_agent.agent import Agent
from keye_agent.agent.events import Event, RunFinished
from keye_agent.types import Message, RunResult


class Abandoned:
    """Set when a run was cancelled: a sync tool cancelled mid-call keeps running in its worker thread (Python
    cannot stop a thread), and the interpreter would wait for it at exit; `main` then exits without waiting."""

    work = False


async def drive_async(agent: Agent, task: str | Message, on_event: Callable[[Event], None] | None = None, *,
                      history: Sequence[Message] | None = None, second_interrupt_exits: bool = True,
                      **limits: Any) -> RunResult:
    """Run ``task`` on ``agent``, calling ``on_event`` with each event; returns the run's result."""
    run = agent.new_run(task, history=history, **limits)
    loop = asyncio.get_running_loop()
    pressed = 0

    def on_sigint() -> None:
        nonlocal pressed
        pressed += 1
        if pressed > 1 and second_interrupt_exits:
            os._exit(130)
        run.cancel()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    result: RunResult | None = None
    try:
        async for ev in run.events():
            if on_event is not None:
                on_event(ev)
            if isinstance(ev, RunFinished):
                result = ev.result
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    assert result is not None, "a run always ends with RunFinished"
    if result.status == "cancelled":
        Abandoned.work = True
    return result


def drive(agent: Agent, task: str | Message, on_event: Callable[[Event], None] | None = None, *,
          history: Sequence[Message] | None = None, **limits: Any) -> RunResult:
    """:func:`drive_async` from sync code (the `run` and `demo` commands)."""
    from keye_agent._sync import run_sync

    return run_sync(drive_async(agent, task, on_event, history=history, **limits))
