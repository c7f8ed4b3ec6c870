"""What can go wrong in a step: a closed set of typed faults, each carrying the message the model sees.

Part of the shared vocabulary (beside :mod:`keye_agent.types`, which re-exports these names): it imports nothing
of the package but :mod:`keye_agent.errors`. The planner loop builds the faults (``keye_agent.agent.faults``); a
step record keeps them in ``errors``; an :class:`~keye_agent.agent.ErrorEvent` carries one; they survive the
trajectory's JSONL round trip (and step errors written as plain text by earlier versions still load)::

    MalformedOutput    the output did not parse as a tool call          the model is told how to call
    EmptyAnswer        neither text nor a tool call                     the model is asked for one or the other
    TruncatedAnswer    an answer cut at the token limit                 the model is asked for a shorter one
    ToolFault          a call failed; ``error_kind`` says how           the tool's error and a hint for that kind
    RepeatedCall       an exact repeat of a call that failed            the model is told to change approach
    FinalRejected      the final-answer check refused the answer        the check's objection
    BudgetSpent        steps, tokens, wall clock or errors ran out      nothing: the run ends (message says why)
    ModelFailed        the backend failed past its retries              nothing: the run ends
    Cancelled          the run was cancelled                            nothing: the run ends
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import errors as _errors


class FaultKind(StrEnum):
    """The closed set of step faults (the ``kind`` of an ``ErrorEvent``)."""

    MALFORMED = "malformed"
    EMPTY = "empty"
    TRUNCATED = "truncated"
    TOOL = "tool"
    REPEATED = "repeated"
    FINAL_REJECTED = "final_rejected"
    BUDGET = "budget"
    MODEL = "model"
    CANCELLED = "cancelled"


class ToolErrorKind(StrEnum):
    """How a tool call failed, decided once from the exception's class (see :func:`tool_error_kind`)."""

    NOT_FOUND = "not_found"  # the model named a tool that is not offered
    INVALID_ARGUMENTS = "invalid_arguments"  # arguments that fail the schema
    TIMEOUT = "timeout"
    DENIED = "denied"  # the approval callback refused
    FAILED = "failed"  # the tool ran and raised
    REPEATED = "repeated"  # not run: an exact repeat of a call that already failed


_KIND_OF_CLASS: tuple[tuple[type[BaseException], ToolErrorKind], ...] = (
    (_errors.ToolNotFoundError, ToolErrorKind.NOT_FOUND),
    (_errors.ToolValidationError, ToolErrorKind.INVALID_ARGUMENTS),
    (_errors.ToolTimeoutError, ToolErrorKind.TIMEOUT),
    (_errors.ToolApprovalDenied, ToolErrorKind.DENIED),
)


def tool_error_kind(exc: BaseException | type[BaseException]) -> ToolErrorKind:
    """The kind of a tool failure, by the exception's class (any other exception: the tool failed)."""
    cls = exc if isinstance(exc, type) else type(exc)
    for base, kind in _KIND_OF_CLASS:
        if issubclass(cls, base):
            return kind
    return ToolErrorKind.FAILED


BudgetStatus = Literal["max_steps", "max_tokens", "timeout", "max_errors"]


class _Fault(BaseModel):
    model_config = ConfigDict(frozen=True)

    message: str
    """What the model is sent. For faults that end the run (budget, model, cancelled): why it ended; the model is
    sent nothing then."""

    @property
    def summary(self) -> str:
        """One line for logs and tables."""
        return self.message.split("\n", 1)[0]

    def __str__(self) -> str:
        return self.summary


class MalformedOutput(_Fault):
    kind: Literal[FaultKind.MALFORMED] = FaultKind.MALFORMED
    problems: list[str] = Field(default_factory=list)
    """What the parser could not read, one entry per problem."""

    @property
    def summary(self) -> str:
        return "malformed tool call: " + "; ".join(self.problems)


class EmptyAnswer(_Fault):
    kind: Literal[FaultKind.EMPTY] = FaultKind.EMPTY


class TruncatedAnswer(_Fault):
    kind: Literal[FaultKind.TRUNCATED] = FaultKind.TRUNCATED


class ToolFault(_Fault):
    kind: Literal[FaultKind.TOOL] = FaultKind.TOOL
    tool: str
    call_id: str = ""
    error_kind: ToolErrorKind = ToolErrorKind.FAILED
    error_type: str = ""
    """The exception's class name, as the model is shown it."""
    error: str = ""

    @property
    def summary(self) -> str:
        return f"{self.tool}: {self.error}"


class RepeatedCall(_Fault):
    kind: Literal[FaultKind.REPEATED] = FaultKind.REPEATED
    tool: str
    call_id: str = ""
    first_step: int = 0
    """The step where the same call failed first."""

    @property
    def summary(self) -> str:
        return f"{self.tool}: repeat of the call that failed at step {self.first_step}"


class FinalRejected(_Fault):
    kind: Literal[FaultKind.FINAL_REJECTED] = FaultKind.FINAL_REJECTED
    objection: str = ""


class BudgetSpent(_Fault):
    kind: Literal[FaultKind.BUDGET] = FaultKind.BUDGET
    status: BudgetStatus


class ModelFailed(_Fault):
    kind: Literal[FaultKind.MODEL] = FaultKind.MODEL
    error_type: str = ""


class Cancelled(_Fault):
    kind: Literal[FaultKind.CANCELLED] = FaultKind.CANCELLED


Fault = Annotated[
    MalformedOutput | EmptyAnswer | TruncatedAnswer | ToolFault | RepeatedCall | FinalRejected | BudgetSpent
    | ModelFailed | Cancelled,
    Field(discriminator="kind"),
]
"""One step fault; ``kind`` tells which."""

FAULT_TYPES: tuple[type[_Fault], ...] = (MalformedOutput, EmptyAnswer, TruncatedAnswer, ToolFault, RepeatedCall,
                                         FinalRejected, BudgetSpent, ModelFailed, Cancelled)


# ---- step errors written as text by earlier versions --------------------------------------------------------

_BUDGET_TEXT: tuple[tuple[str, BudgetStatus], ...] = (
    (r"no final answer within \d+ steps", "max_steps"),
    (r"\d+ consecutive failed steps", "max_errors"),
    (r"wall-clock budget of ", "timeout"),
    (r"token budget spent", "max_tokens"),
    (r"the conversation needs \d+ tokens", "max_tokens"),
)


def legacy_fault(text: str, tool_results: list[Any]) -> _Fault:
    """The typed fault of a step error that an earlier version saved as text (every wording it wrote is known).

    ``tool_results`` are the step's results (dicts or ToolResults): a tool failure was saved as ``"name: error"``.
    Raises ValueError for text no version of keye-agent wrote.
    """
    if text.startswith("Your last reply contained a tool call that could not be parsed:"):
        problems = [line[2:] for line in text.splitlines()[1:] if line.startswith("- ")]
        return MalformedOutput(message=text, problems=problems)
    if text.startswith("Your last reply was empty"):
        return EmptyAnswer(message=text)
    if text.startswith("Your last reply was cut off at the token limit"):
        return TruncatedAnswer(message=text)
    if text.startswith("Your final answer was not accepted: "):
        return FinalRejected(message=text, objection=text.removeprefix("Your final answer was not accepted: "))
    for r in tool_results:
        r = r if isinstance(r, dict) else r.model_dump()
        if r.get("ok") or text != f"{r.get('name')}: {r.get('error')}":
            continue
        if r.get("error_type") == "RepeatedCallError":
            m = re.search(r"already failed at step (\d+)", r.get("error") or "")
            return RepeatedCall(message=r.get("error") or "", tool=r["name"], call_id=r.get("call_id", ""),
                                first_step=int(m.group(1)) if m else 0)
        cls = getattr(_errors, r.get("error_type") or "", None)
        kind = tool_error_kind(cls) if isinstance(cls, type) and issubclass(cls, BaseException) else \
            ToolErrorKind.FAILED
        return ToolFault(message=r.get("error") or "", tool=r["name"], call_id=r.get("call_id", ""), error_kind=kind,
                         error_type=r.get("error_type") or "", error=r.get("error") or "")
    for pattern, status in _BUDGET_TEXT:
        if re.match(pattern, text):
            return BudgetSpent(message=text, status=status)
    if text == "cancelled by the user":
        return Cancelled(message=text)
    head = text.split(":", 1)[0]
    cls = getattr(_errors, head, None)
    if isinstance(cls, type) and issubclass(cls, _errors.ModelError):
        return ModelFailed(message=text, error_type=head)
    raise ValueError(f"step error {text[:80]!r} is not one that keye-agent writes")
