"""The planner loop: `Agent` (configuration), `Run` (one run's state) and its handle, events, and context
management."""

from .context import ContextPolicy, Conversation, DropOldSteps, ElideOldToolOutputs
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
from .handle import RunHandle
from .limits import RunLimits
from .loop import Agent
from .run import Run

__all__ = [
    "Agent", "ContextPolicy", "Conversation", "DropOldSteps", "ElideOldToolOutputs", "ErrorEvent", "Event",
    "FinalAnswer", "Note", "ReasoningDelta", "Run", "RunFinished", "RunHandle", "RunLimits", "StepFinished", "StepStarted", "TextDelta",
    "ToolCallFinished", "ToolCallStarted",
]
