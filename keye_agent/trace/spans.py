"""OpenTelemetry spans of one run, built from its event stream, named as OpenTelemetry's GenAI semantic conventions
name them (development status; attribute names as of the GenAI conventions of 2026)::

    invoke_agent keye-agent          the run (gen_ai.operation.name invoke_agent)
    ├── step 1                       one record of the trajectory: model step, plan, compaction, final check
    │   ├── chat MODEL               the model call: tokens in/out, time to first chunk, finish reason
    │   ├── execute_tool lookup      one tool call: arguments size, duration, error class, retries
    │   └── execute_tool search
    └── step 2 ...

Spans are made from the events the loop yields (the one stream the REPL, logs and trajectories read), with the
start and end times the events and the step records carry, so the loop holds no tracing code beyond handing its
events over. Tool calls of one step run concurrently: each span starts when its call was handed to the registry
and lasts the call's measured ``duration_s``. A tool's own spans (an instrumented HTTP client inside it) are not
children of its ``execute_tool`` span: the calls run outside any span context.

Secrets never reach an attribute: every string (names, errors, and the opt-in content) passes through
:func:`keye_agent.errors.redact`. Content (tool arguments and results, the model's output) is opt-in, as the
conventions ask: ``capture_content=True``, or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from keye_agent.agent.events import (
    Event,
    RunFinished,
    StepFinished,
    StepStarted,
    ToolCallStarted,
)
from keye_agent.errors import redact
from keye_agent.types import RunResult, StepRecord, ToolCall, ToolResult

if TYPE_CHECKING:
    from keye_agent.agent.run import Run

INSTRUMENTATION = "keye_agent"
AGENT_NAME = "keye-agent"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MAX_CONTENT_CHARS = 8192
"""Opt-in content longer than this is cut (with a marker): span attributes are not a store for whole documents."""

# the operation of each step kind: a plan step is the conventions' `plan`; the others are this framework's own
_STEP_OPERATION = {"model": "keye.step", "plan": "plan", "final_check": "keye.final_check",
                   "compaction": "keye.compaction"}


def capture_content_default() -> bool:
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def as_tracer(tracer: Any) -> trace.Tracer:
    """An OpenTelemetry ``Tracer`` from a tracer or a ``TracerProvider``."""
    if hasattr(tracer, "get_tracer"):
        return tracer.get_tracer(INSTRUMENTATION)
    if not hasattr(tracer, "start_span"):
        from keye_agent.errors import ConfigError

        raise ConfigError(f"tracer= takes an OpenTelemetry Tracer or TracerProvider, not {type(tracer).__name__}",
                          hint="e.g. Agent(..., tracer=opentelemetry.trace.get_tracer('my-app')) or "
                               "keye_agent.trace.make_tracer_provider('console')")
    return tracer


def provider_of(model: Any) -> tuple[str, SpanKind]:
    """``gen_ai.provider.name`` and the span kind of a model call: an OpenAI-compatible server is a client call;
    local and scripted backends run in this process."""
    if type(model).__name__.startswith("OpenAI"):
        return "openai", SpanKind.CLIENT
    return INSTRUMENTATION, SpanKind.INTERNAL


def _clean(value: Any) -> Any:
    """An attribute value with every string redacted (sequences of strings too)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [redact(v) if isinstance(v, str) else v for v in value]
    return value


def _attrs(items: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _clean(v) for k, v in items.items() if v is not None}


def _content(text: str) -> str:
    text = redact(text)
    return text if len(text) <= MAX_CONTENT_CHARS else text[:MAX_CONTENT_CHARS] + "...(cut)"


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


@dataclass
class _Pending:
    """What the events of the step record now open said before its ``StepFinished``."""

    kind: str
    index: int
    start_ns: int
    tool_start_ns: dict[str, int] = field(default_factory=dict)
    calls: dict[str, ToolCall] = field(default_factory=dict)


class RunSpans:
    """The spans of one run; :class:`~keye_agent.agent.run.Run` hands it every event (:meth:`on_event`) and calls
    :meth:`close` when its event stream ends, however it ends."""

    def __init__(self, tracer: Any, run: Run, *, capture_content: bool | None = None,
                 agent_name: str = AGENT_NAME) -> None:
        self.tracer = as_tracer(tracer)
        self.capture = capture_content_default() if capture_content is None else capture_content
        model = run.agent.model
        self.model_name = str(getattr(model, "name", "") or "unknown")
        self.provider, self.model_kind = provider_of(model)
        self.settings = run.agent.settings
        self.stream = run.agent.stream_deltas
        self.agent_name = agent_name
        self.conversation_id = uuid.uuid4().hex
        self._pending: _Pending | None = None
        self.span: Span = self.tracer.start_span(
            f"invoke_agent {agent_name}", kind=SpanKind.INTERNAL, start_time=time.time_ns(),
            attributes=_attrs({
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": self.provider,
                "gen_ai.agent.name": agent_name,
                "gen_ai.request.model": self.model_name,
                "gen_ai.conversation.id": self.conversation_id,
                "keye.run.max_steps": run.limits.max_steps,
                "keye.run.tools": sorted(run.offered),
            }))
        self._context = trace.set_span_in_context(self.span)

    # ---- the event stream ------------------------------------------------------------------------------------

    def on_event(self, ev: Event) -> None:
        now = time.time_ns()
        if isinstance(ev, StepStarted):
            self._pending = _Pending(ev.kind, ev.step, now)
        elif isinstance(ev, ToolCallStarted):
            p = self._pending
            if p is not None:
                p.tool_start_ns[ev.call.id] = now
                p.calls[ev.call.id] = ev.call
        elif isinstance(ev, StepFinished):
            self._step(ev.record, now)
        elif isinstance(ev, RunFinished):
            self._finish(ev.result, now)

    def close(self) -> None:
        """End what is still open: the consumer stopped reading the events before the run finished."""
        if self.span.is_recording():
            self.span.set_attribute("keye.run.status", "abandoned")
            self.span.set_status(Status(StatusCode.ERROR, "the run's events were not read to the end"))
            self.span.set_attribute("error.type", "abandoned")
            self.span.end()

    # ---- spans -----------------------------------------------------------------------------------------------

    def _step(self, rec: StepRecord, now: int) -> None:
        p = self._pending
        self._pending = None
        if p is None or p.index != rec.index or p.kind != rec.kind:  # a record whose start was not seen
            p = _Pending(rec.kind, rec.index, now - _ns(rec.duration_s))
        op = _STEP_OPERATION.get(rec.kind, f"keye.{rec.kind}")
        name = "plan" if rec.kind == "plan" else f"{'step' if rec.kind == 'model' else rec.kind} {rec.index}"
        faults = [str(f.kind) for f in rec.errors]
        step = self.tracer.start_span(name, context=self._context, kind=SpanKind.INTERNAL, start_time=p.start_ns,
                                      attributes=_attrs({
                                          "gen_ai.operation.name": op,
                                          "gen_ai.agent.name": self.agent_name,
                                          "keye.step.index": rec.index,
                                          "keye.step.kind": rec.kind,
                                          "keye.step.faults": faults or None,
                                      }))
        ctx = trace.set_span_in_context(step)
        if rec.turn is not None:
            self._model_call(rec, p, ctx)
        calls = {c.id: c for c in rec.turn.tool_calls} if rec.turn is not None else {}
        calls.update(p.calls)
        model_end = p.start_ns + _ns(rec.model_duration_s)
        for res in rec.tool_results:
            self._tool_call(res, calls.get(res.call_id), p.tool_start_ns.get(res.call_id, model_end), ctx)
        if rec.errors:
            step.set_attribute("error.type", faults[0])
            step.set_status(Status(StatusCode.ERROR, redact(rec.errors[0].summary)))
        step.end(end_time=max(now, p.start_ns))

    def _model_call(self, rec: StepRecord, p: _Pending, ctx: Any) -> None:
        turn = rec.turn
        assert turn is not None
        s = self.settings
        start = p.start_ns
        end = start + _ns(rec.model_duration_s)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": self.provider,
            "gen_ai.request.model": self.model_name,
            "gen_ai.request.max_tokens": s.max_tokens,
            "gen_ai.request.temperature": s.temperature,
            "gen_ai.request.top_p": s.top_p,
            "gen_ai.request.seed": s.seed,
            "gen_ai.request.stream": self.stream,
            "gen_ai.conversation.id": self.conversation_id,
            "gen_ai.response.finish_reasons": [str(turn.finish_reason)],
            "gen_ai.usage.input_tokens": rec.usage.prompt_tokens,
            "gen_ai.usage.output_tokens": rec.usage.completion_tokens,
            "keye.model.tool_calls": len(turn.tool_calls),
            "keye.model.parse_errors": len(turn.parse_errors) or None,
        }
        if rec.model_first_chunk_s is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = rec.model_first_chunk_s
        if self.capture:
            attrs["gen_ai.output.messages"] = _content(json.dumps([_output_message(rec)], ensure_ascii=False))
        span = self.tracer.start_span(f"chat {self.model_name}", context=ctx, kind=self.model_kind,
                                      start_time=start, attributes=_attrs(attrs))
        if turn.parse_errors:
            span.set_attribute("error.type", "malformed_output")
            span.set_status(Status(StatusCode.ERROR, redact(turn.parse_errors[0])))
        span.end(end_time=end)

    def _tool_call(self, res: ToolResult, call: ToolCall | None, start: int, ctx: Any) -> None:
        args = json.dumps(call.arguments if call is not None else {}, ensure_ascii=False, default=str)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": res.name,
            "gen_ai.tool.call.id": res.call_id,
            "gen_ai.tool.type": "function",
            "keye.tool.arguments.size": len(args.encode()),
            "keye.tool.result.size": len(res.content.encode()),
            "keye.tool.attempts": res.attempts,
            "keye.tool.retries": max(0, res.attempts - 1),
            "keye.tool.ok": res.ok,
        }
        if not res.ok:
            attrs["error.type"] = res.error_type or (str(res.error_kind) if res.error_kind else "_OTHER")
            attrs["keye.tool.error.kind"] = str(res.error_kind) if res.error_kind else None
        if self.capture:
            attrs["gen_ai.tool.call.arguments"] = _content(args)
            attrs["gen_ai.tool.call.result"] = _content(res.content if res.ok else res.error or "")
        span = self.tracer.start_span(f"execute_tool {res.name}", context=ctx, kind=SpanKind.INTERNAL,
                                      start_time=start, attributes=_attrs(attrs))
        if not res.ok:
            span.set_status(Status(StatusCode.ERROR, redact((res.error or "").split("\n", 1)[0])))
        span.end(end_time=start + _ns(res.duration_s))

    def _finish(self, result: RunResult, now: int) -> None:
        p = self._pending
        if p is not None:  # the run ended inside a step (a model failure, a cancel): its record holds the fault
            rec = next((s for s in reversed(result.trajectory.steps) if s.index == p.index and s.kind == p.kind), None)
            if rec is not None:
                self._step(rec, now)
            self._pending = None
        span = self.span
        span.set_attributes(_attrs({
            "keye.run.status": result.status,
            "keye.run.steps": result.steps,
            "gen_ai.usage.input_tokens": result.usage.prompt_tokens,
            "gen_ai.usage.output_tokens": result.usage.completion_tokens,
        }))
        if not result.ok:
            span.set_attribute("error.type", result.status)
            span.set_status(Status(StatusCode.ERROR, redact(result.error or result.status)))
        span.end(end_time=now)


def _output_message(rec: StepRecord) -> dict[str, Any]:
    """The model's answer in the conventions' output-message shape (opt-in content)."""
    turn = rec.turn
    assert turn is not None
    parts: list[dict[str, Any]] = []
    if turn.reasoning:
        parts.append({"type": "reasoning", "content": turn.reasoning})
    if turn.text:
        parts.append({"type": "text", "content": turn.text})
    for c in turn.tool_calls:
        parts.append({"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments})
    return {"role": "assistant", "parts": parts, "finish_reason": str(turn.finish_reason)}
