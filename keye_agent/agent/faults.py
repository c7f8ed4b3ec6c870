"""Building the typed faults of a step, each with the words the model is sent (see :mod:`keye_agent.faults`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from keye_agent.faults import (
    BudgetSpent,
    BudgetStatus,
    Cancelled,
    EmptyAnswer,
    FinalRejected,
    MalformedOutput,
    ModelFailed,
    RepeatedCall,
    ToolErrorKind,
    ToolFault,
    TruncatedAnswer,
)
from keye_agent.types import CallFormat, ToolCall, ToolResult

from . import prompts


def malformed(problems: list[str], model: Any) -> MalformedOutput:
    """The output did not parse as a tool call; the wording comes from the backend's ``call_format``."""
    fmt = getattr(model, "call_format", None)
    how = fmt.how_to_call() if isinstance(fmt, CallFormat) else prompts.NEUTRAL_HOW_TO_CALL
    return MalformedOutput(message=prompts.malformed_message(problems, how), problems=list(problems))


def empty(offered: Collection[str]) -> EmptyAnswer:
    return EmptyAnswer(message=prompts.empty_answer(offered))


def truncated(offered: Collection[str]) -> TruncatedAnswer:
    return TruncatedAnswer(message=prompts.truncated_answer(offered))


def of_tool(call: ToolCall, result: ToolResult, first_failure: tuple[int, str] | None) -> ToolFault | RepeatedCall:
    """The fault of a failed call; ``first_failure`` is (step, error) of the same call's earlier failure."""
    kind = result.error_kind or ToolErrorKind.FAILED
    message = prompts.correction_for(result, kind)
    if kind is ToolErrorKind.REPEATED:
        return RepeatedCall(message=message, tool=call.name, call_id=call.id,
                            first_step=first_failure[0] if first_failure else 0)
    return ToolFault(message=message, tool=call.name, call_id=call.id, error_kind=kind,
                     error_type=result.error_type or "", error=result.error or "")


def final_rejected(objection: str) -> FinalRejected:
    return FinalRejected(message=prompts.final_rejected(objection), objection=objection)


def budget(status: BudgetStatus, message: str) -> BudgetSpent:
    return BudgetSpent(message=message, status=status)


def model_failed(error: BaseException) -> ModelFailed:
    return ModelFailed(message=f"{type(error).__name__}: {error}", error_type=type(error).__name__)


def cancelled() -> Cancelled:
    return Cancelled(message="cancelled by the user")
