"""The planner loop: `Agent`, its events, and context management."""

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
from .loop import Agent

__all__ = [
    "Agent", "ContextPolicy", "Conversation", "DropOldSteps", "ElideOldToolOutputs", "ErrorEvent", "Event",
    "FinalAnswer", "Note", "ReasoningDelta", "RunFinished", "StepFinished", "StepStarted", "TextDelta",
    "ToolCallFinished", "ToolCallStarted",
]
