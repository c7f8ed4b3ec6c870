"""The budgets of one run: the agent's defaults, overridden per run by keyword arguments."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypedDict

from keye_agent.errors import KeyeAgentError


@dataclass(frozen=True, slots=True)
class RunLimits:
    """The budgets of one run; each ends the run with a status, never with an exception."""

    max_steps: int = 20
    """Model steps (plans, compactions and final-answer checks do not count)."""
    max_total_tokens: int | None = None
    """Prompt plus completion tokens over the whole run."""
    max_wall_s: float | None = None
    """Wall-clock seconds; a model call or a tool in flight is interrupted when they run out."""
    max_consecutive_errors: int = 3
    """Steps in a row in which nothing worked (malformed output, an empty answer, every call failed)."""

    def __post_init__(self) -> None:
        for name, low in (("max_steps", 1), ("max_consecutive_errors", 1), ("max_total_tokens", 1)):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < low):
                raise KeyeAgentError(f"{name} must be an integer of at least {low}, got {v!r}")
        if self.max_wall_s is not None and not self.max_wall_s > 0:
            raise KeyeAgentError(f"max_wall_s must be a positive number of seconds, got {self.max_wall_s!r}")


class LimitArgs(TypedDict, total=False):
    """Per-run overrides of the agent's limits, as keyword arguments of ``run``/``arun``/``stream``/``start``."""

    max_steps: int
    max_total_tokens: int | None
    max_wall_s: float | None
    max_consecutive_errors: int


_LIMIT_NAMES = frozenset(f.name for f in dataclasses.fields(RunLimits))


def merge_limits(base: RunLimits, overrides: dict[str, Any]) -> RunLimits:
    unknown = set(overrides) - _LIMIT_NAMES
    if unknown:
        raise KeyeAgentError(f"unknown run limit {sorted(unknown)[0]!r}", hint="one of " + ", ".join(sorted(_LIMIT_NAMES)))
    return dataclasses.replace(base, **overrides) if overrides else base
