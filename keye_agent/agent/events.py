"""Typed events of a run. The REPL, logs, trajectories and runners all read this one stream."""

from __future__ import annotations

from dataclasses import dataclass

from keye_agent.types import RunResult, StepRecord, ToolCall, ToolResult


@dataclass(frozen=True, slots=True)
class StepStarted:
    step: int
    kind: str = "model"


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
    """Something went wrong in a step; ``kind`` is e.g. "parse", "tool", "repeat", "budget", "model", "context"."""

    step: int
    kind: str
    message: str


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
