"""One run of an agent: its own conversation, usage, failed calls, limits and cancellation.

:class:`Agent` is configuration; each call of ``run``/``arun``/``stream``/``start`` makes a :class:`Run`, so runs of
one agent never share state. A run is a sequence of steps; :meth:`Run.step` yields the events of one model step
(with the plan, compaction and final-check records around it), each record ending with a ``StepFinished``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from keye_agent.errors import ContextWindowError, KeyeAgentError, ModelError
from keye_agent.types import (
    AssistantTurn,
    Fault,
    GenerationSettings,
    Message,
    RunResult,
    RunStatus,
    StepKind,
    StepRecord,
    TextPart,
    Trajectory,
    Usage,
)

from . import faults
from .calls import call_key, run_turn_calls
from .context import Conversation, cut_output
from .events import (
    ErrorEvent,
    Event,
    FinalAnswer,
    Note,
    ReasoningDelta,
    RunFinished,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from .limits import RunLimits
from .prompts import FINAL_ANSWER_TOOL, PLAN_REQUEST

if TYPE_CHECKING:
    from .loop import Agent


class _EndRun(Exception):
    def __init__(self, status: RunStatus, fault: Fault) -> None:
        super().__init__(fault.message)
        self.status = status
        self.fault = fault


class Run:
    """The state of one run. Made by :class:`Agent`; drive it with :meth:`events` (or a handle from
    :meth:`Agent.start`); :meth:`cancel` stops this run alone."""

    def __init__(self, agent: Agent, task: str | Message, history: Sequence[Message] | None, limits: RunLimits) -> None:
        self.agent = agent
        self.limits = limits
        self.task = task if isinstance(task, Message) else Message.user(task)
        self.registry = agent._run_registry()
        model = agent.model
        self.schemas = self.registry.schemas() if agent.settings.tool_choice != "none" else []
        self.offered = frozenset(self.registry.names) if self.schemas else frozenset()
        """Names of the tools the model is offered in this run (what corrective text may point to)."""
        self.conv = Conversation(lambda ms: model.count_tokens(ms, None),
                                 fixed_tokens=model.count_tokens([], self.schemas) if self.schemas else 0)
        if agent.instructions:
            self.conv.append(Message.system(agent.instructions))
        for m in history or ():
            self.conv.append(m)
        self.conv.append(self.task)
        self._protected = len(self.conv.messages)
        self.trajectory = Trajectory(task=self.task.text, instructions=agent.instructions,
                                     model=getattr(model, "name", ""))
        self.usage = Usage()
        self.failed_calls: dict[str, tuple[int, str]] = {}
        """Call key -> (step, error) of each call that failed: an exact repeat is refused without running."""
        self.consecutive_errors = 0
        self.step_index = 0
        self.final: str | None = None
        self.result: RunResult | None = None
        self._current: StepRecord | None = None
        self._started = time.perf_counter()
        self._cancel_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None

    # ---- cancellation ----------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop this run at once (a model call or a tool in flight is interrupted); it ends with status
        ``cancelled``. Safe from another thread or a signal handler; before the run starts, it never starts."""
        self._cancel_requested = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cancel_now)
            except RuntimeError:  # the loop closed in between: the run is over
                pass

    def _cancel_now(self) -> None:
        if self._task is not None and not self._task.done() and self.result is None:
            self._task.cancel()

    async def _guard(self, aw: Any) -> Any:
        """Await ``aw`` under the wall-clock budget; cancellation reaches it through the task."""
        # the task that runs this step now: the sync `stream()` drives the generator with a new task per event
        self._task = asyncio.current_task()
        if self.limits.max_wall_s is None:
            return await aw
        remaining = max(0.0, self.limits.max_wall_s - (time.perf_counter() - self._started))
        try:
            async with asyncio.timeout(remaining):
                return await aw
        except TimeoutError:
            raise self._wall_clock_spent() from None

    def _wall_clock_spent(self) -> _EndRun:
        return _EndRun("timeout", faults.budget("timeout", f"wall-clock budget of {self.limits.max_wall_s:g} s spent"))

    def _check_budgets(self) -> None:
        if self._cancel_requested:
            raise asyncio.CancelledError()
        lim = self.limits
        if lim.max_wall_s is not None and time.perf_counter() - self._started >= lim.max_wall_s:
            raise self._wall_clock_spent()
        if lim.max_total_tokens is not None and self.usage.total_tokens >= lim.max_total_tokens:
            raise _EndRun("max_tokens", faults.budget(
                "max_tokens", f"token budget spent: {self.usage.total_tokens} of {lim.max_total_tokens}"))

    # ---- the run ---------------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """The run's events, to the end (the last is :class:`RunFinished`). A run is driven once. With the agent's
        ``tracer``, each event also goes to the run's spans (keye_agent.trace builds them from this stream)."""
        if self.agent.tracer is None:
            async for ev in self._events():
                yield ev
            return
        from keye_agent.trace.spans import RunSpans

        spans = RunSpans(self.agent.tracer, self)
        try:
            async for ev in self._events():
                spans.on_event(ev)
                yield ev
        finally:
            spans.close()

    async def _events(self) -> AsyncIterator[Event]:
        if self._loop is not None:
            raise KeyeAgentError("this run was already started; each run is driven once")
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._started = time.perf_counter()
        status: RunStatus = "max_steps"
        end: Fault | None = None
        runs = self.agent._runs  # so that Agent.cancel() reaches this run while it goes
        runs.add(self)
        try:
            while True:
                if self.step_index >= self.limits.max_steps:
                    raise _EndRun("max_steps", faults.budget(
                        "max_steps", f"no final answer within {self.limits.max_steps} steps"))
                async for ev in self.step():
                    yield ev
                if self.final is not None:
                    status = "completed"
                    break
                if self.consecutive_errors >= self.limits.max_consecutive_errors:
                    raise _EndRun("max_errors", faults.budget("max_errors", (
                        f"{self.consecutive_errors} consecutive failed steps "
                        f"(limit {self.limits.max_consecutive_errors})")))
        except _EndRun as e:
            status, end = e.status, e.fault
        except ContextWindowError as e:
            status, end = "max_tokens", faults.budget("max_tokens", str(e))
        except ModelError as e:
            status, end = "model_error", faults.model_failed(e)
        except asyncio.CancelledError:
            if not self._cancel_requested:
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()  # the cancel was ours and is handled: the caller's task goes on
            status, end = "cancelled", faults.cancelled()
        finally:
            runs.discard(self)
        if end is not None:
            self._close_current(end)
            yield ErrorEvent(self.step_index, end.kind, end.message, end)
        self.trajectory.messages = self.conv.messages
        self.result = RunResult(
            status=status, final_answer=self.final, trajectory=self.trajectory, usage=self.usage,
            duration_s=time.perf_counter() - self._started,
            steps=sum(1 for s in self.trajectory.steps if s.kind == "model"),
            error=None if end is None else end.message)
        yield RunFinished(self.result)

    def _count_interrupted(self, schemas: list[dict[str, Any]], written: list[str]) -> None:
        """Usage of a model turn cut off by a cancel or the wall clock: the prompt, and what was streamed so far,
        counted with the backend's tokenizer (the turn never reported its own)."""
        rec = self._current
        if rec is None:
            return
        model = self.agent.model
        text = "".join(written)
        try:
            prompt = model.count_tokens(self.conv.messages, schemas or None)
            completion = model.count_tokens([Message.assistant(text)]) if text else 0
        except (KeyeAgentError, ValueError, TypeError, AttributeError):
            return  # a backend that cannot count: the usage stays unknown (0), as before
        usage = Usage(prompt_tokens=prompt, completion_tokens=completion)
        rec.usage = rec.usage + usage
        self.usage = self.usage + usage
        rec.notes.append("interrupted turn: tokens counted from the prompt and the text streamed before the stop")

    def _close_current(self, fault: Fault) -> None:
        """Record the fault that ended the run: on the step it interrupted, else on the last record."""
        rec, steps = self._current, self.trajectory.steps
        if rec is not None and not any(s is rec for s in reversed(steps)):
            rec.errors.append(fault)
            steps.append(rec)
        elif steps:
            steps[-1].errors.append(fault)

    def _fault(self, rec: StepRecord, fault: Fault, *, tell: bool = True) -> ErrorEvent:
        """Record ``fault`` on ``rec``; with ``tell``, send its message to the model as a user message."""
        rec.errors.append(fault)
        if tell:
            self.conv.append(Message.user(fault.message))
        return ErrorEvent(rec.index, fault.kind, fault.message, fault)

    async def step(self) -> AsyncIterator[Event]:
        """One model step: a plan first when one is due, a compaction when the window needs it, the model's turn
        and its tool calls, then the final-answer check of a final answer. Each record's events end with its
        ``StepFinished``; a final answer ends the step with ``FinalAnswer``."""
        self.step_index += 1
        n = self.step_index
        self._check_budgets()
        self._current = None
        agent = self.agent
        if agent.plan_every and (n - 1) % agent.plan_every == 0:
            async for ev in self._plan(n):
                yield ev
        for ev in self._compact(n):
            yield ev
        rec = self._current = StepRecord(index=n)
        yield StepStarted(n)
        t0 = time.perf_counter()
        settings = agent.settings
        if n == 1 and agent.first_tool_choice is not None and self.schemas:
            settings = dataclasses.replace(settings, tool_choice=agent.first_tool_choice)
        turn: AssistantTurn | None = None
        async for item in self._ask(self.schemas, settings, n):
            if isinstance(item, AssistantTurn):
                turn = item
            else:
                yield item
        assert turn is not None
        rec.model_duration_s = time.perf_counter() - t0
        rec.turn = turn
        rec.usage = turn.usage
        self.usage = self.usage + turn.usage
        for note in turn.notes:  # the backend changed the input to fit (a subsampled video): say so, never silently
            rec.notes.append(note)
            yield Note(n, note)

        malformed = faults.malformed(turn.parse_errors, agent.model) if turn.parse_errors else None
        answer: str | None = None
        if not turn.tool_calls:
            self.conv.append(Message.assistant(turn.raw if malformed and turn.raw else turn.text or None))
            if malformed is not None:
                yield self._fault(rec, malformed)
            elif not turn.text.strip():
                yield self._fault(rec, faults.empty(self.offered))
            elif turn.finish_reason == "length":  # an answer cut off at the token limit is not a final answer
                yield self._fault(rec, faults.truncated(self.offered))
            else:
                answer = turn.text
            failed = answer is None
        else:
            if malformed is not None:
                yield self._fault(rec, malformed, tell=False)
            n_failed = 0
            async for ev in self._run_calls(rec, turn):
                if isinstance(ev, ErrorEvent):
                    n_failed += 1
                elif isinstance(ev, ToolCallFinished) and ev.result.ok and ev.result.name == FINAL_ANSWER_TOOL \
                        and FINAL_ANSWER_TOOL in self.offered:
                    answer = ev.result.content
                yield ev
            if malformed is not None:
                self.conv.append(Message.user(malformed.message))
            failed = malformed is not None or n_failed == len(turn.tool_calls)

        self.consecutive_errors = self.consecutive_errors + 1 if failed else 0
        rec.duration_s = time.perf_counter() - t0
        self.trajectory.steps.append(rec)
        yield StepFinished(n, rec)
        if answer is not None:
            if agent.final_check is not None:
                async for ev in self._check_final(n, answer):
                    yield ev
            else:
                self.final = answer
            if self.final is not None:
                yield FinalAnswer(n, self.final)

    async def _run_calls(self, rec: StepRecord, turn: AssistantTurn) -> AsyncIterator[Event]:
        calls = turn.tool_calls
        self.conv.append(Message.assistant(turn.text or None, list(calls)))
        for call in calls:
            yield ToolCallStarted(rec.index, call)
        results = await run_turn_calls(self.registry, calls, self.failed_calls, self.agent.approve, self._guard)
        limit = self.agent.context.max_tool_output_chars
        for call, res in zip(calls, results, strict=True):
            rec.tool_results.append(res)
            yield ToolCallFinished(rec.index, res)
            if res.ok:
                content, note = cut_output(res.content, limit)
                if note:
                    rec.notes.append(f"{call.name}: {note}")
                    yield Note(rec.index, f"{call.name}: {note}")
                # images a tool returned (a sandbox plot) go back to the model beside its text
                self.conv.append(Message.tool(call.id, call.name, [TextPart(text=content), *res.attachments]
                                              if res.attachments else content))
            else:
                key = call_key(call)
                fault = faults.of_tool(call, res, self.failed_calls.get(key))
                self.failed_calls.setdefault(key, (rec.index, res.error or ""))
                yield self._fault(rec, fault, tell=False)
                self.conv.append(Message.tool(call.id, call.name, fault.message))

    async def _check_final(self, n: int, answer: str) -> AsyncIterator[Event]:
        assert self.agent.final_check is not None
        rec = StepRecord(index=n, kind="final_check")
        yield StepStarted(n, "final_check")
        t0 = time.perf_counter()
        objection = self.agent.final_check(answer, self.trajectory)
        if objection:
            yield self._fault(rec, faults.final_rejected(objection))
        else:
            rec.notes.append("final answer accepted")
            self.final = answer
        rec.duration_s = time.perf_counter() - t0
        self.trajectory.steps.append(rec)
        yield StepFinished(n, rec)

    async def _plan(self, n: int) -> AsyncIterator[Event]:
        rec = self._record(n, "plan")
        yield StepStarted(n, "plan")
        t0 = time.perf_counter()
        self.conv.append(Message.user(PLAN_REQUEST))
        settings = dataclasses.replace(self.agent.settings, tool_choice="none")
        turn: AssistantTurn | None = None
        async for item in self._ask([], settings, n):
            if isinstance(item, AssistantTurn):
                turn = item
            else:
                yield item
        assert turn is not None
        self.conv.append(Message.assistant(turn.text or "(no plan)"))
        rec.turn, rec.usage = turn, turn.usage
        self.usage = self.usage + turn.usage
        rec.model_duration_s = rec.duration_s = time.perf_counter() - t0
        rec.notes.append(f"plan: {turn.text}")
        yield Note(n, f"plan: {turn.text}")
        self.trajectory.steps.append(rec)
        self._current = None
        yield StepFinished(n, rec)

    def _record(self, n: int, kind: StepKind) -> StepRecord:
        rec = self._current = StepRecord(index=n, kind=kind)
        return rec

    def _compact(self, n: int) -> list[Event]:
        """Keep the conversation inside the model's window; a compaction is a record of its own."""
        window = getattr(self.agent.model, "context_window", None)
        if not window:
            return []
        policy = self.agent.context
        reserve = policy.reserve_tokens if policy.reserve_tokens is not None else self.agent.settings.max_tokens
        budget = window - reserve
        conv = self.conv
        if conv.total <= budget:
            return []
        t0 = time.perf_counter()
        rec = self._record(n, "compaction")
        events: list[Event] = [StepStarted(n, "compaction")]
        for strategy in policy.strategies:
            for note in strategy(conv, budget, self._protected, policy.keep_recent_steps):
                rec.notes.append(note)
                events.append(Note(n, note))
            if conv.total <= budget:
                break
        else:
            raise ContextWindowError(
                f"the conversation needs {conv.total} tokens but the window leaves {budget} "
                f"({window} minus {reserve} reserved for the answer) even after compaction")
        rec.duration_s = time.perf_counter() - t0
        self.trajectory.steps.append(rec)
        self._current = None
        events.append(StepFinished(n, rec))
        return events

    async def _ask(self, schemas: list[dict[str, Any]], settings: GenerationSettings, n: int) -> AsyncIterator[Any]:
        """The model's answer: deltas as events, then the :class:`AssistantTurn`."""
        model = self.agent.model
        written: list[str] = []  # what the model streamed so far: an interrupted turn's tokens are counted from it
        if not self.agent.stream_deltas:
            try:
                yield await self._guard(model.agenerate(self.conv.messages, schemas or None, settings))
            except (asyncio.CancelledError, _EndRun):
                self._count_interrupted(schemas, written)
                raise
            return
        t0 = time.perf_counter()
        rec = self._current
        it = model.astream(self.conv.messages, schemas or None, settings).__aiter__()
        try:
            while True:
                try:
                    chunk = await self._guard(it.__anext__())
                except StopAsyncIteration:
                    break
                except (asyncio.CancelledError, _EndRun):
                    self._count_interrupted(schemas, written)
                    raise
                if rec is not None and rec.model_first_chunk_s is None:
                    rec.model_first_chunk_s = time.perf_counter() - t0
                if chunk.kind == "text":
                    written.append(chunk.text)
                    yield TextDelta(n, chunk.text)
                elif chunk.kind == "reasoning":
                    written.append(chunk.text)
                    yield ReasoningDelta(n, chunk.text)
                elif chunk.kind == "done" and chunk.turn is not None:
                    yield chunk.turn
                    return
        finally:
            # close the backend's stream here and now: left to the garbage collector, an unfinished async
            # generator is closed through the loop's finaliser hook, a cross-thread wake-up per step
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
        raise ModelError(f"backend {getattr(model, 'name', '?')!r} ended its stream without a final turn")
