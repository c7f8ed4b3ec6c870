"""The shared vocabulary: messages, tool calls and results, usage, model turns, the ModelBackend protocol,
run results and trajectories.

Messages have the shape of OpenAI chat messages, so traces move between systems::

    Message(role="user", content="What is 2+2?")
    Message(role="assistant", content=None, tool_calls=[ToolCall(id="c1", name="add", arguments={"a": 2, "b": 2})])
    Message(role="tool", tool_call_id="c1", name="add", content="4")
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import TrajectoryError
from .faults import (
    BudgetSpent,
    Cancelled,
    EmptyAnswer,
    Fault,
    FaultKind,
    FinalRejected,
    MalformedOutput,
    ModelFailed,
    RepeatedCall,
    ToolErrorKind,
    ToolFault,
    TruncatedAnswer,
    legacy_fault,
)

__all__ = [  # the faults live in faults.py and are part of this vocabulary
    "BudgetSpent", "Cancelled", "EmptyAnswer", "Fault", "FaultKind", "FinalRejected", "MalformedOutput", "ModelFailed",
    "RepeatedCall", "ToolErrorKind", "ToolFault", "TruncatedAnswer",
]

Role = Literal["system", "user", "assistant", "tool"]


class TextPart(BaseModel):
    model_config = ConfigDict(frozen=True)
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image given by URL/path or inline base64 data."""

    model_config = ConfigDict(frozen=True)
    type: Literal["image"] = "image"
    url: str | None = None
    data: str | None = None  # base64
    mime_type: str = "image/png"


class VideoPart(BaseModel):
    model_config = ConfigDict(frozen=True)
    type: Literal["video"] = "video"
    url: str
    fps: float | None = None


ContentPart = Annotated[TextPart | ImagePart | VideoPart, Field(discriminator="type")]


class ToolCall(BaseModel):
    """A call the model asked for. ``arguments`` is the decoded JSON object."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    role: Role
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The text of the message, parts joined; images and videos are left out."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @classmethod
    def system(cls, text: str) -> Message:
        return cls(role="system", content=text)

    @classmethod
    def user(cls, content: str | list[ContentPart]) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, text: str | None = None, tool_calls: list[ToolCall] | None = None) -> Message:
        return cls(role="assistant", content=text, tool_calls=tool_calls or None)

    @classmethod
    def tool(cls, call_id: str, name: str, content: str | list[ContentPart]) -> Message:
        return cls(role="tool", tool_call_id=call_id, name=name, content=content)


class MessageList(list):  # type: ignore[type-arg]
    """A list of messages that counts its changes other than appends in ``revision``, so a backend can count the
    tokens of a growing conversation incrementally and still notice when older messages were replaced or removed."""

    revision = 0

    def _bump(self) -> None:
        self.revision += 1

    def __setitem__(self, i: Any, v: Any) -> None:
        self._bump()
        super().__setitem__(i, v)

    def __delitem__(self, i: Any) -> None:
        self._bump()
        super().__delitem__(i)

    def insert(self, i: Any, v: Any) -> None:
        self._bump()
        super().insert(i, v)

    def pop(self, i: Any = -1) -> Any:
        self._bump()
        return super().pop(i)

    def remove(self, v: Any) -> None:
        self._bump()
        super().remove(v)

    def clear(self) -> None:
        self._bump()
        super().clear()

    def sort(self, *a: Any, **k: Any) -> None:
        self._bump()
        super().sort(*a, **k)

    def reverse(self) -> None:
        self._bump()
        super().reverse()

    def __iadd__(self, other: Any) -> MessageList:
        self.extend(other)
        return self


class ToolResult(BaseModel):
    """What a tool call produced. On failure ``ok`` is False and ``error`` says what went wrong."""

    call_id: str
    name: str
    ok: bool
    content: str = ""
    error: str | None = None
    error_type: str | None = None
    """The exception's class name, as the model is shown it."""
    error_kind: ToolErrorKind | None = None
    """How the call failed, decided from the exception's class where it was caught (None: it did not fail)."""
    duration_s: float = 0.0
    attempts: int = 1
    attachments: list[ImagePart] = Field(default_factory=list)

    @property
    def error_detail(self) -> str:
        """The error without a leading ``"<error_type>: "`` (a plain exception's message carries its class name;
        shown beside ``error_type``, it would say it twice)."""
        err = self.error or ""
        prefix = f"{self.error_type}: " if self.error_type else ""
        return err[len(prefix):] if prefix and err.startswith(prefix) else err


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


FinishReason = Literal["stop", "tool_calls", "length", "error", "cancelled"]


class AssistantTurn(BaseModel):
    """One answer of the model: text, reasoning, tool calls, usage and why it stopped.

    ``parse_errors`` lists what the backend could not parse out of the raw output (a malformed tool call, say);
    the planner loop sends those back to the model.
    """

    text: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    finish_reason: FinishReason = "stop"
    parse_errors: list[str] = Field(default_factory=list)
    raw: str | None = None
    notes: list[str] = Field(default_factory=list)
    """What the backend changed in the input to fit its budgets (a video's frames subsampled, an image downscaled)."""


ToolChoice = Literal["auto", "required", "none"] | str


@dataclass
class GenerationSettings:
    """How a backend should generate. ``tool_choice`` has the OpenAI meaning: "auto", "required", "none" or the
    name of one tool that must be called."""

    max_tokens: int = 1024
    """Upper bound on generated tokens for one turn."""
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k filtering."""
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    seed: int | None = None
    enable_thinking: bool | None = None
    """None leaves the backend's default; True/False switch the model's thinking mode where it has one."""


@dataclass(frozen=True)
class StreamChunk:
    """One piece of a streamed answer. ``kind`` is "text" or "reasoning" for deltas, "done" for the final turn."""

    kind: Literal["text", "reasoning", "done"]
    text: str = ""
    turn: AssistantTurn | None = None


@runtime_checkable
class CallFormat(Protocol):
    """How a backend's model writes tool calls; the planner loop takes its corrective wording from here."""

    name: str  # "hermes", "openai", ...

    def how_to_call(self) -> str:
        """What a model is told when its output did not parse as a tool call."""
        ...


@runtime_checkable
class ModelBackend(Protocol):
    """What the planner loop needs from a model.

    ``tools`` are OpenAI-format function schemas (``{"type": "function", "function": {...}}``).
    Backends are async first; :class:`keye_agent.backends.base.BaseBackend` adds the sync ``generate``.
    """

    name: str
    context_window: int

    async def agenerate(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AssistantTurn: ...

    def astream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AsyncIterator[StreamChunk]: ...

    def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None) -> int: ...


RunStatus = Literal[
    "completed",  # a final answer
    "max_steps",
    "max_tokens",
    "timeout",
    "max_errors",  # too many consecutive errors
    "cancelled",
    "model_error",  # the backend failed past its retries
]

StepKind = Literal["model", "plan", "final_check", "compaction"]
"""``model``: the model answered and its calls ran; ``plan``: the model wrote a plan (no tools); ``final_check``:
the final-answer check judged an answer; ``compaction``: the conversation was shrunk to fit the window."""


class StepRecord(BaseModel):
    """One step of a run: what the model said, which tools ran and what failed.

    ``index`` is the model step the record belongs to: a plan, a compaction or a final-answer check carries the
    index of the model step it precedes or judges.
    """

    index: int
    kind: StepKind = "model"
    started_at: float = Field(default_factory=time.time)
    duration_s: float = 0.0
    model_duration_s: float = 0.0
    model_first_chunk_s: float | None = None
    """From the model call to the first chunk its stream yielded (None: not streamed). A backend that holds a tool
    call back until it is whole yields its first chunk then."""
    turn: AssistantTurn | None = None
    tool_results: list[ToolResult] = Field(default_factory=list)
    errors: list[Fault] = Field(default_factory=list)
    """Every fault of this step (malformed output, tool failures, the budget that ended the run), in order."""
    notes: list[str] = Field(default_factory=list)
    """What the loop did to the conversation (outputs cut, steps compacted), so nothing is dropped silently."""
    usage: Usage = Field(default_factory=Usage)

    @model_validator(mode="before")
    @classmethod
    def _typed_errors(cls, data: Any) -> Any:
        # trajectories saved before faults were typed hold their step errors as text
        if isinstance(data, dict) and any(isinstance(e, str) for e in data.get("errors") or ()):
            results = data.get("tool_results") or []
            data = {**data, "errors": [legacy_fault(e, results) if isinstance(e, str) else e for e in data["errors"]]}
        return data


class Trajectory(BaseModel):
    """The ordered steps of a run and the conversation as the model last saw it.

    Saved as JSONL: a header line, one line per step, and a closing line with the messages and the result.
    """

    task: str = ""
    instructions: str | None = None
    model: str = ""
    steps: list[StepRecord] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def model_turns(self) -> list[AssistantTurn]:
        """The model's turns in order (what a scripted backend replays)."""
        return [s.turn for s in self.steps if s.turn is not None]

    def save(self, path: str | Path, result: RunResult | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            header = {"type": "header", "version": 1, "task": self.task, "instructions": self.instructions,
                      "model": self.model, "metadata": self.metadata}
            f.write(json.dumps(header, ensure_ascii=False) + "\n")
            for step in self.steps:
                f.write(json.dumps({"type": "step", **step.model_dump(mode="json")}, ensure_ascii=False) + "\n")
            closing: dict[str, Any] = {"type": "end", "messages": [m.model_dump(mode="json", exclude_none=True)
                                                                    for m in self.messages]}
            if result is not None:
                closing["result"] = result.model_dump(mode="json", exclude={"trajectory"})
            f.write(json.dumps(closing, ensure_ascii=False) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise TrajectoryError(f"cannot read trajectory {path}: {e.strerror}") from e
        traj = cls()
        seen_header = False
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                kind = rec.pop("type")
                if kind == "header":
                    seen_header = True
                    traj.task = rec.get("task", "")
                    traj.instructions = rec.get("instructions")
                    traj.model = rec.get("model", "")
                    traj.metadata = rec.get("metadata", {})
                elif kind == "step":
                    traj.steps.append(StepRecord.model_validate(rec))
                elif kind == "end":
                    traj.messages = [Message.model_validate(m) for m in rec.get("messages", [])]
                else:
                    raise ValueError(f"unknown record type {kind!r}")
            except (ValueError, KeyError, TypeError) as e:
                raise TrajectoryError(f"{path}:{lineno}: not a trajectory record: {e}") from e
        if not seen_header:
            raise TrajectoryError(f"{path}: no header line; is this a keye-agent trajectory (JSONL)?")
        return traj


class RunResult(BaseModel):
    """What :meth:`Agent.run` returns."""

    status: RunStatus
    final_answer: str | None = None
    trajectory: Trajectory
    usage: Usage = Field(default_factory=Usage)
    duration_s: float = 0.0
    steps: int = 0
    error: str | None = None
    """Why the run ended, when it did not complete."""

    @property
    def ok(self) -> bool:
        return self.status == "completed"
