"""Tasks in tau2-bench's task schema, loaded and validated with errors that name the file, the task and the field.

A task file is a JSON list of tasks::

    [{"id": "update_task_1",
      "user_scenario": {"instructions": "Request that task_1 be marked as completed."},
      "evaluation_criteria": {"actions": [{"action_id": "a1", "name": "update_task_status",
                                           "arguments": {"task_id": "task_1", "status": "completed"}}]}}]

The field names and meanings are tau2-bench's (``docs/evaluation.md`` there), so its task files load unchanged and
our results files embed tasks its tooling reads back.
"""

from __future__ import annotations

import gzip
import json
import textwrap
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keye_agent.errors import ConfigError

from .messages import TauMessage, TauToolCall

Requestor = Literal["user", "assistant"]


class RewardType(StrEnum):
    """What may gate a task's reward; the reward is the product over the task's ``reward_basis``."""

    DB = "DB"
    ENV_ASSERTION = "ENV_ASSERTION"
    NL_ASSERTION = "NL_ASSERTION"
    ACTION = "ACTION"
    COMMUNICATE = "COMMUNICATE"


DEFAULT_REWARD_BASIS = (RewardType.DB, RewardType.COMMUNICATE)


class _Model(BaseModel):
    # unknown keys are kept (tau2-bench adds fields over time) but never lost on a round trip
    model_config = ConfigDict(extra="allow")


class StructuredUserInstructions(_Model):
    domain: str
    reason_for_call: str
    known_info: str | None = None
    unknown_info: str | None = None
    task_instructions: str

    def __str__(self) -> str:
        parts = [f"Domain: {self.domain}", f"Reason for call:\n{textwrap.indent(self.reason_for_call, chr(9))}"]
        if self.known_info is not None:
            parts.append(f"Known info:\n{textwrap.indent(self.known_info, chr(9))}")
        if self.unknown_info is not None:
            parts.append(f"Unknown info:\n{textwrap.indent(self.unknown_info, chr(9))}")
        parts.append(f"Task instructions:\n{textwrap.indent(self.task_instructions, chr(9))}")
        return "\n".join(parts)


class UserScenario(_Model):
    persona: str | None = None
    instructions: StructuredUserInstructions | str

    def __str__(self) -> str:
        parts = []
        if self.persona is not None:
            parts += ["Persona:", textwrap.indent(self.persona, "\t")]
        parts += ["Instructions:", textwrap.indent(str(self.instructions), "\t")]
        return "\n".join(parts)


class Description(_Model):
    purpose: str | None = None
    relevant_policies: str | None = None
    notes: str | None = None


class Action(_Model):
    """One gold tool call. ``compare_args`` None compares every argument of the call; [] only the name."""

    action_id: str
    requestor: Requestor = "assistant"
    name: str
    arguments: dict[str, Any]
    info: str | None = None
    compare_args: list[str] | None = None

    def matches(self, call: TauToolCall) -> bool:
        """tau2-bench's rule: same name, and equal values on the compared arguments (the call's own keys when
        ``compare_args`` is None)."""
        if call.name != self.name:
            return False
        keys = list(call.arguments) if self.compare_args is None else self.compare_args
        if not keys:
            return True
        ours = {k: v for k, v in call.arguments.items() if k in keys}
        gold = {k: v for k, v in self.arguments.items() if k in keys}
        return ours == gold


class EnvFunctionCall(_Model):
    env_type: Requestor
    func_name: str
    arguments: dict[str, Any]


class EnvAssertion(EnvFunctionCall):
    assert_value: bool = True
    message: str | None = None


class EvaluationCriteria(_Model):
    actions: list[Action] | None = None
    env_assertions: list[EnvAssertion] | None = None
    communicate_info: list[str] | None = None
    nl_assertions: list[str] | None = None
    reward_basis: list[RewardType] = Field(default_factory=lambda: list(DEFAULT_REWARD_BASIS))


class InitializationData(_Model):
    agent_data: dict[str, Any] | None = None
    user_data: dict[str, Any] | None = None


class InitialState(_Model):
    initialization_data: InitializationData | None = None
    initialization_actions: list[EnvFunctionCall] | None = None
    message_history: list[TauMessage] | None = None


class Task(_Model):
    """A task: who the user is and what they want, where the world starts, and how the outcome is judged."""

    id: str
    description: Description | None = None
    user_scenario: UserScenario
    ticket: str | None = None
    initial_state: InitialState | None = None
    evaluation_criteria: EvaluationCriteria | None = None
    user_tools: list[str] | None = None

    @property
    def gold_actions(self) -> list[Action]:
        ec = self.evaluation_criteria
        return list(ec.actions or []) if ec else []

    @property
    def reward_basis(self) -> list[RewardType]:
        ec = self.evaluation_criteria
        return list(ec.reward_basis) if ec else list(DEFAULT_REWARD_BASIS)


def _where(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"


def parse_tasks(data: Any, *, source: str = "<tasks>") -> list[Task]:
    """Validate a decoded task list. Errors name the task (index and id) and the field path."""
    if not isinstance(data, list):
        raise ConfigError(f"a task file holds a JSON list of tasks, got {type(data).__name__}", file=source,
                          hint="wrap the task objects in [ ... ]")
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data):
        label = f"task #{i}" + (f" ({raw.get('id')!r})" if isinstance(raw, dict) and "id" in raw else "")
        try:
            task = Task.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(f"{_where(err['loc'])}: {err['msg']}" for err in e.errors()[:5])
            raise ConfigError(f"{label} is not a valid task: {problems}", file=source,
                              hint="see tau2-bench's task schema: id, user_scenario.instructions, "
                                   "initial_state, evaluation_criteria") from None
        if task.id in seen:
            raise ConfigError(f"{label}: task id {task.id!r} repeats task #{seen[task.id]}", file=source)
        seen[task.id] = i
        tasks.append(task)
    return tasks


def read_data_text(path: Path) -> str:
    """A data file's text; ``*.gz`` files are decompressed (large data files ship compressed)."""
    if path.suffix == ".gz":
        try:
            return gzip.decompress(path.read_bytes()).decode("utf-8")
        except (gzip.BadGzipFile, EOFError) as e:
            raise ConfigError(f"not a valid gzip file: {e}", file=str(path)) from None
    return path.read_text(encoding="utf-8")


def load_tasks(path: str | Path) -> list[Task]:
    """Load and validate a tasks.json file (or tasks.json.gz)."""
    path = Path(path)
    try:
        text = read_data_text(path)
    except OSError as e:
        raise ConfigError(f"cannot read the task file: {e.strerror}", file=str(path)) from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not valid JSON: {e.msg}", file=str(path), line=e.lineno, column=e.colno) from None
    return parse_tasks(data, source=str(path))


def load_splits(path: str | Path) -> dict[str, list[str]]:
    """A split file maps split names (``base``, ``train``, ``test``) to task ids."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read the split file: {e.strerror}", file=str(path)) from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"not valid JSON: {e.msg}", file=str(path), line=e.lineno, column=e.colno) from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ConfigError("a split file maps split names to lists of task ids", file=str(path))
    return {str(k): [str(x) for x in v] for k, v in data.items()}
