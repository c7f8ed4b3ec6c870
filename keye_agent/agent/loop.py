"""The planner loop: the model answers, the registry runs its calls, results go back, until a final answer or a
budget ends the run. Every failure becomes a corrective message to the model and a line in the trajectory."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from keye_agent._sync import run_sync
from keye_agent.errors import ContextWindowError, KeyeAgentError, ModelError
from keye_agent.tools import Tool, ToolRegistry
from keye_agent.tools.registry import ApprovalCallback
from keye_agent.types import (
    AssistantTurn,
    GenerationSettings,
    Message,
    ModelBackend,
    RunResult,
    RunStatus,
    StepRecord,
    Trajectory,
    Usage,
)

from .calls import call_key, final_answer_tool, run_turn_calls
from .context import ContextPolicy, Conversation, cut_output
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
from .prompts import (
    EMPTY_ANSWER,
    FINAL_ANSWER_TOOL,
    PLAN_REQUEST,
    TRUNCATED_ANSWER,
    correction_for,
    parse_error_message,
)

FinalCheck = Callable[[str, Trajectory], "str | None"]


class _Budget(Exception):
    def __init__(self, status: RunStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Agent:
    """Drives a model through tool-calling steps.

    Example::

        agent = Agent(model=backend, tools=[get_weather], instructions="You are a weather assistant.")
        result = agent.run("Is it warmer in Paris or in Rome?")
        print(result.status, result.final_answer)

    Budgets (``max_steps``, ``max_total_tokens``, ``max_wall_s``, ``max_consecutive_errors``) end a run with a
    status in the :class:`RunResult`, never with an exception. A backend failure past its retries ends the run with
    status ``model_error``. ``first_tool_choice`` overrides the settings' ``tool_choice`` on the first step only
    (e.g. ``"required"`` to make a small model start with a tool call, then answer freely).
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
    ) -> None:
        if max_steps < 1:
            raise KeyeAgentError(f"max_steps must be at least 1, got {max_steps}")
        self.model = model
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        """The caller's tools; the agent never adds to this registry (``final_answer`` lives in a per-run view)."""
        self.final_answer_tool = final_answer_tool
        self.first_tool_choice = first_tool_choice
        self._registry = self.tools
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
        self._cancel: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None

    # ---- public entry points -------------------------------------------------------------------------------

    def run(self, task: str | Message, *, history: Sequence[Message] | None = None) -> RunResult:
        """Run the task to the end (sync)."""
        return run_sync(self.arun(task, history=history))

    async def arun(self, task: str | Message, *, history: Sequence[Message] | None = None) -> RunResult:
        result: RunResult | None = None
        async for ev in self.astream(task, history=history):
            if isinstance(ev, RunFinished):
                result = ev.result
        assert result is not None
        return result

    def stream(self, task: str | Message, *, history: Sequence[Message] | None = None) -> Iterator[Event]:
        """Sync generator of the run's events (ends with :class:`RunFinished`)."""
        loop = asyncio.new_event_loop()
        agen = self.astream(task, history=history)
        try:
            while True:
                try:
                    yield loop.run_until_complete(agen.__anext__())
                except StopAsyncIteration:
                    break
        finally:
            loop.run_until_complete(agen.aclose())
            loop.close()

    def cancel(self) -> None:
        """Stop the current run at once (a model call or a tool in flight is interrupted); it ends with status
        ``cancelled``. Safe to call from another thread or a signal handler."""
        if self._cancel is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cancel_now)

    def _cancel_now(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # ---- the loop ------------------------------------------------------------------------------------------

    async def astream(self, task: str | Message, *, history: Sequence[Message] | None = None) -> AsyncIterator[Event]:
        """Async generator of the run's events."""
        self._cancel = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        started = time.perf_counter()
        task_msg = task if isinstance(task, Message) else Message.user(task)
        self._registry = self._run_registry()
        schemas = self._registry.schemas() if self.settings.tool_choice != "none" else []
        conv = Conversation(lambda ms: self.model.count_tokens(ms, None),
                            fixed_tokens=self.model.count_tokens([], schemas) if schemas else 0)
        if self.instructions:
            conv.append(Message.system(self.instructions))
        for m in history or ():
            conv.append(m)
        conv.append(task_msg)
        protected = len(conv.messages)
        traj = Trajectory(task=task_msg.text, instructions=self.instructions, model=getattr(self.model, "name", ""))
        usage = Usage()
        consecutive_errors = 0
        failed_calls: dict[str, tuple[int, str]] = {}
        status: RunStatus = "max_steps"
        rec: StepRecord | None = None
        final: str | None = None
        end_error: str | None = None
        step = 0

        try:
            while step < self.max_steps:
                step += 1
                self._check_budgets(started, usage)
                rec = StepRecord(index=step)
                yield StepStarted(step)
                t0 = time.perf_counter()

                if self.plan_every and (step - 1) % self.plan_every == 0:
                    async for ev in self._plan(conv, rec, step, started):
                        yield ev

                for note in self._fit_context(conv, protected):
                    rec.notes.append(note)
                    yield Note(step, note)

                turn: AssistantTurn | None = None
                tm = time.perf_counter()
                settings = self.settings
                if step == 1 and self.first_tool_choice is not None and schemas:
                    settings = dataclasses.replace(settings, tool_choice=self.first_tool_choice)
                async for item in self._call_model(conv.messages, schemas, settings, step, started):
                    if isinstance(item, AssistantTurn):
                        turn = item
                    else:
                        yield item
                assert turn is not None
                rec.model_duration_s = time.perf_counter() - tm
                rec.turn = turn
                rec.usage = turn.usage
                usage = usage + turn.usage

                step_failed = False
                if turn.parse_errors:
                    msg = parse_error_message(turn.parse_errors)
                    rec.errors.append(msg)
                    yield ErrorEvent(step, "parse", msg)
                    step_failed = True

                calls = turn.tool_calls
                if not calls:
                    conv.append(Message.assistant(turn.raw if turn.parse_errors and turn.raw else turn.text or None))
                    if step_failed:
                        conv.append(Message.user(msg))
                    elif not turn.text.strip():
                        rec.errors.append(EMPTY_ANSWER)
                        yield ErrorEvent(step, "empty", EMPTY_ANSWER)
                        conv.append(Message.user(EMPTY_ANSWER))
                        step_failed = True
                    elif turn.finish_reason == "length":
                        # an answer cut off at the token limit is not a final answer
                        rec.errors.append(TRUNCATED_ANSWER)
                        yield ErrorEvent(step, "truncated", TRUNCATED_ANSWER)
                        conv.append(Message.user(TRUNCATED_ANSWER))
                        step_failed = True
                    else:
                        objection = self._check_final(turn.text, traj)
                        if objection:
                            rec.errors.append(objection)
                            yield ErrorEvent(step, "final_check", objection)
                            conv.append(Message.user(objection))
                        else:
                            final, status = turn.text, "completed"
                else:
                    conv.append(Message.assistant(turn.text or None, list(calls)))
                    for call in calls:
                        yield ToolCallStarted(step, call)
                    results = await run_turn_calls(self._registry, calls, failed_calls, self.approve,
                                                   lambda aw: self._guard(aw, started))
                    n_failed = 0
                    for call, res in zip(calls, results, strict=True):
                        rec.tool_results.append(res)
                        yield ToolCallFinished(step, res)
                        if res.ok:
                            content, note = cut_output(res.content, self.context.max_tool_output_chars)
                            if note:
                                rec.notes.append(f"{call.name}: {note}")
                                yield Note(step, f"{call.name}: {note}")
                            conv.append(Message.tool(call.id, call.name, content))
                            if call.name == FINAL_ANSWER_TOOL:
                                final, status = res.content, "completed"
                        else:
                            n_failed += 1
                            failed_calls.setdefault(call_key(call), (step, res.error or ""))
                            text = correction_for(res)
                            rec.errors.append(f"{call.name}: {res.error}")
                            yield ErrorEvent(step, "tool", f"{call.name}: {res.error}")
                            conv.append(Message.tool(call.id, call.name, text))
                    if final is not None:
                        objection = self._check_final(final, traj)
                        if objection:
                            rec.errors.append(objection)
                            yield ErrorEvent(step, "final_check", objection)
                            conv.append(Message.user(objection))
                            final, status = None, "max_steps"
                    step_failed = step_failed or n_failed == len(calls)
                    if parse_msg := (turn.parse_errors and parse_error_message(turn.parse_errors)):
                        conv.append(Message.user(parse_msg))

                consecutive_errors = consecutive_errors + 1 if step_failed else 0
                rec.duration_s = time.perf_counter() - t0
                traj.steps.append(rec)
                yield StepFinished(step, rec)
                if final is not None:
                    yield FinalAnswer(step, final)
                    break
                if consecutive_errors >= self.max_consecutive_errors:
                    status = "max_errors"
                    end_error = f"{consecutive_errors} consecutive failed steps (limit {self.max_consecutive_errors})"
                    break
            else:
                end_error = f"no final answer within {self.max_steps} steps"
        except _Budget as b:
            status, end_error = b.status, str(b)
            self._close_step(traj, step, rec, end_error)
        except ContextWindowError as e:
            status, end_error = "max_tokens", str(e)
            self._close_step(traj, step, rec, end_error)
        except ModelError as e:
            status, end_error = "model_error", f"{type(e).__name__}: {e}"
            self._close_step(traj, step, rec, end_error)
        except asyncio.CancelledError:
            if not self._cancel.is_set():
                raise
            if self._task is not None and self._task.cancelling():
                self._task.uncancel()  # the cancel was ours and is handled: the caller's task goes on
            status, end_error = "cancelled", "cancelled by the user"
            self._close_step(traj, step, rec, end_error)

        if end_error and status != "completed":
            yield ErrorEvent(step, "end", end_error)
        traj.messages = conv.messages
        result = RunResult(status=status, final_answer=final, trajectory=traj, usage=usage,
                           duration_s=time.perf_counter() - started, steps=len(traj.steps),
                           error=None if status == "completed" else end_error)
        yield RunFinished(result)

    def _run_registry(self) -> ToolRegistry:
        """The caller's tools plus ``final_answer`` (when on), without changing the caller's registry."""
        if not self.final_answer_tool or FINAL_ANSWER_TOOL in self.tools:
            return self.tools
        return self.tools.with_tools([final_answer_tool()])

    @staticmethod
    def _close_step(traj: Trajectory, step: int, rec: StepRecord | None, error: str) -> None:
        if rec is not None and (not traj.steps or traj.steps[-1] is not rec):
            rec.errors.append(error)
            traj.steps.append(rec)

    def _check_budgets(self, started: float, usage: Usage) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise asyncio.CancelledError()
        if self.max_wall_s is not None and time.perf_counter() - started >= self.max_wall_s:
            raise _Budget("timeout", f"wall-clock budget of {self.max_wall_s:g} s spent")
        if self.max_total_tokens is not None and usage.total_tokens >= self.max_total_tokens:
            raise _Budget("max_tokens", f"token budget spent: {usage.total_tokens} of {self.max_total_tokens}")

    def _remaining(self, started: float) -> float | None:
        if self.max_wall_s is None:
            return None
        return max(0.0, self.max_wall_s - (time.perf_counter() - started))

    async def _guard(self, aw: Any, started: float) -> Any:
        """Await ``aw`` under the wall-clock budget (cancellation reaches it through the task)."""
        # the task that runs this step: `stream()` drives the generator with a new task per event
        self._task = asyncio.current_task()
        if self.max_wall_s is None:
            return await aw
        try:
            async with asyncio.timeout(self._remaining(started)):
                return await aw
        except TimeoutError:
            raise _Budget("timeout", f"wall-clock budget of {self.max_wall_s:g} s spent") from None

    async def _call_model(
        self, messages: list[Message], schemas: list[dict[str, Any]], settings: GenerationSettings, step: int,
        started: float,
    ) -> AsyncIterator[Any]:
        if not self.stream_deltas:
            yield await self._guard(self.model.agenerate(messages, schemas or None, settings), started)
            return
        stream = self.model.astream(messages, schemas or None, settings)
        it = stream.__aiter__()
        try:
            while True:
                try:
                    chunk = await self._guard(it.__anext__(), started)
                except StopAsyncIteration:
                    break
                if chunk.kind == "text":
                    yield TextDelta(step, chunk.text)
                elif chunk.kind == "reasoning":
                    yield ReasoningDelta(step, chunk.text)
                elif chunk.kind == "done" and chunk.turn is not None:
                    yield chunk.turn
                    return
        finally:
            # close the backend's stream here and now: left to the garbage collector, an unfinished async
            # generator is closed through the loop's finaliser hook, a cross-thread wake-up per step
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
        raise ModelError(f"backend {getattr(self.model, 'name', '?')!r} ended its stream without a final turn")

    def _check_final(self, answer: str, traj: Trajectory) -> str | None:
        if self.final_check is None:
            return None
        objection = self.final_check(answer, traj)
        return f"Your final answer was not accepted: {objection}" if objection else None

    def _fit_context(self, conv: Conversation, protected: int) -> list[str]:
        window = getattr(self.model, "context_window", None)
        if not window:
            return []
        reserve = self.context.reserve_tokens if self.context.reserve_tokens is not None else self.settings.max_tokens
        budget = window - reserve
        if conv.total <= budget:
            return []
        notes: list[str] = []
        for strategy in self.context.strategies:
            notes.extend(strategy(conv, budget, protected, self.context.keep_recent_steps))
            if conv.total <= budget:
                return notes
        raise ContextWindowError(
            f"the conversation needs {conv.total} tokens but the window leaves {budget} "
            f"({window} minus {reserve} reserved for the answer) even after compaction"
        )

    async def _plan(self, conv: Conversation, rec: StepRecord, step: int, started: float) -> AsyncIterator[Event]:
        conv.append(Message.user(PLAN_REQUEST))
        plan_settings = GenerationSettings(**{**self.settings.__dict__, "tool_choice": "none"})
        turn = None
        async for item in self._call_model(conv.messages, [], plan_settings, step, started):
            if isinstance(item, AssistantTurn):
                turn = item
            else:
                yield item
        assert turn is not None
        conv.append(Message.assistant(turn.text or "(no plan)"))
        rec.notes.append(f"plan: {turn.text}")
        yield Note(step, f"plan: {turn.text}")
