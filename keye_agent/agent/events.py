"""Typed events of a run. The REPL, logs, trajectories and runners all read this one stream."""

from __future__ import annotations

from dataclasses import dataclass

from keye_agent.types import Fault, FaultKind, RunResult, StepKind, StepRecord, ToolCall, ToolResult


@dataclass(frozen=True, slots=True)
class StepStarted:
    """A step begins; ``kind`` is the :data:`~keye_agent.types.StepKind` of the record its StepFinished carries."""

    step: int
    kind: StepKind = "model"


@dataclass(frozen=True, slots=True)
class TextDelta:
    step: int
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    step: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    step: int
    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    step: int
    result: ToolResult


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A fault in a step (the same object is in the step record's ``errors``); ``message`` is what the model was
    sent, or for the faults that end a run (budget, model, cancelled) why it ended."""

    step: int
    kind: FaultKind
    message: str
    fault: Fault | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """The loop changed the conversation (an output cut, steps compacted): said aloud, never silently."""

    step: int
    message: str


@dataclass(frozen=True, slots=True)
class StepFinished:
    step: int
    record: StepRecord


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    step: int
    text: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    result: RunResult


Event = (
    StepStarted | TextDelta | ReasoningDelta | ToolCallStarted | ToolCallFinished | ErrorEvent | Note
    | StepFinished | FinalAnswer | RunFinished
)
