"""`Agent`: the configuration of the planner loop, and its entry points. The loop itself is :class:`Run` (run.py):
the model answers, the registry runs its calls, results go back, until a final answer or a budget ends the run.
Every failure becomes a typed fault (faults.py), a corrective message to the model and a line in the trajectory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Unpack

from keye_agent._sync import run_sync
from keye_agent.tools import Tool, ToolRegistry
from keye_agent.tools.registry import ApprovalCallback
from keye_agent.types import GenerationSettings, Message, ModelBackend, RunResult, Trajectory

from .calls import final_answer_tool
from .context import ContextPolicy
from .events import Event, RunFinished
from .handle import RunHandle
from .limits import LimitArgs, RunLimits, merge_limits
from .prompts import FINAL_ANSWER_TOOL
from .run import Run

FinalCheck = Callable[[str, Trajectory], "str | None"]


class Agent:
    """Drives a model through tool-calling steps.

    Example::

        agent = Agent(model=backend, tools=[get_weather], instructions="You are a weather assistant.")
        result = agent.run("Is it warmer in Paris or in Rome?")
        print(result.status, result.final_answer)

    An agent is configuration only: every run is its own :class:`~keye_agent.agent.run.Run` (conversation, usage,
    failed calls, cancellation), so one agent serves many concurrent runs. Budgets (``max_steps``,
    ``max_total_tokens``, ``max_wall_s``, ``max_consecutive_errors``) are the defaults of each run; any run may
    override them as keyword arguments (``agent.run(task, max_steps=5)``). They end a run with a status in the
    :class:`RunResult`, never with an exception. A backend failure past its retries ends the run with status
    ``model_error``. ``first_tool_choice`` overrides the settings' ``tool_choice`` on the first step only
    (e.g. ``"required"`` to make a small model start with a tool call, then answer freely).
    ``tracer`` (an OpenTelemetry ``Tracer`` or ``TracerProvider``) makes spans of every run: the run, its steps,
    model calls and tool calls (see :mod:`keye_agent.trace`; needs the ``trace`` extra).
    """

    def __init__(
        self,
        model: ModelBackend,
        tools: ToolRegistry | Sequence[Tool | Callable[..., Any]] = (),
        instructions: str | None = None,
        *,
        max_steps: int = 20,
        max_total_tokens: int | None = None,
        max_wall_s: float | None = None,
        max_consecutive_errors: int = 3,
        final_answer_tool: bool = True,
        plan_every: int | None = None,
        final_check: FinalCheck | None = None,
        approve: ApprovalCallback | None = None,
        settings: GenerationSettings | None = None,
        context: ContextPolicy | None = None,
        stream_deltas: bool = True,
        first_tool_choice: str | None = None,
        tracer: Any = None,
    ) -> None:
        RunLimits(max_steps, max_total_tokens, max_wall_s, max_consecutive_errors)  # checked now, not at the first run
        self.model = model
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        """The caller's tools; the agent never adds to this registry (``final_answer`` lives in a per-run view)."""
        self.final_answer_tool = final_answer_tool
        self.first_tool_choice = first_tool_choice
        self.instructions = instructions
        self.max_steps = max_steps
        self.max_total_tokens = max_total_tokens
        self.max_wall_s = max_wall_s
        self.max_consecutive_errors = max_consecutive_errors
        self.plan_every = plan_every
        self.final_check = final_check
        self.approve = approve
        self.settings = settings or GenerationSettings()
        self.context = context or ContextPolicy()
        self.stream_deltas = stream_deltas
        self.tracer = tracer
        self._runs: set[Run] = set()

    # ---- public entry points -------------------------------------------------------------------------------

    def new_run(self, task: str | Message, *, history: Sequence[Message] | None = None,
                **limits: Unpack[LimitArgs]) -> Run:
        """A run of ``task`` that has not started yet (drive it with :meth:`Run.events`); ``limits`` override this
        agent's budgets for that run only."""
        base = RunLimits(self.max_steps, self.max_total_tokens, self.max_wall_s, self.max_consecutive_errors)
        return Run(self, task, history, merge_limits(base, dict(limits)))

    def run(self, task: str | Message, *, history: Sequence[Message] | None = None,
            **limits: Unpack[LimitArgs]) -> RunResult:
        """Run the task to the end (sync)."""
        return run_sync(self.arun(task, history=history, **limits))

    async def arun(self, task: str | Message, *, history: Sequence[Message] | None = None,
                   **limits: Unpack[LimitArgs]) -> RunResult:
        """Run the task to the end; many ``arun`` of one agent may run concurrently, each its own run."""
        result: RunResult | None = None
        async for ev in self.astream(task, history=history, **limits):
            if isinstance(ev, RunFinished):
                result = ev.result
        assert result is not None
        return result

    def start(self, task: str | Message, *, history: Sequence[Message] | None = None,
              **limits: Unpack[LimitArgs]) -> RunHandle:
        """Start a run and return its handle: ``await handle`` (or ``handle.result()``) for the result,
        ``handle.cancel()`` to stop this run alone, ``handle.events()`` for its events. In a running event loop the
        run is a task of that loop; otherwise it goes on a thread of its own. See :class:`RunHandle`."""
        run = self.new_run(task, history=history, **limits)
        return RunHandle(run)

    def stream(self, task: str | Message, *, history: Sequence[Message] | None = None,
               **limits: Unpack[LimitArgs]) -> Iterator[Event]:
        """Sync generator of the run's events (ends with :class:`RunFinished`)."""
        loop = asyncio.new_event_loop()
        agen = self.astream(task, history=history, **limits)
        try:
            while True:
                try:
                    yield loop.run_until_complete(agen.__anext__())
                except StopAsyncIteration:
                    break
        finally:
            loop.run_until_complete(agen.aclose())
            loop.close()

    async def astream(self, task: str | Message, *, history: Sequence[Message] | None = None,
                      **limits: Unpack[LimitArgs]) -> AsyncIterator[Event]:
        """Async generator of the run's events (ends with :class:`RunFinished`)."""
        events = self.new_run(task, history=history, **limits).events()
        try:
            async for ev in events:
                yield ev
        finally:
            # a consumer that stops early closes the run's own stream now, not whenever it is collected
            await events.aclose()

    def cancel(self) -> None:
        """Stop every run of this agent in flight (to stop one, use its handle from :meth:`start`); each ends
        with status ``cancelled``. Safe to call from another thread or a signal handler; runs started later are
        not affected."""
        for run in list(self._runs):
            run.cancel()

    def _run_registry(self) -> ToolRegistry:
        """The caller's tools plus ``final_answer`` (when on), without changing the caller's registry."""
        if not self.final_answer_tool or FINAL_ANSWER_TOOL in self.tools:
            return self.tools
        return self.tools.with_tools([final_answer_tool()])
