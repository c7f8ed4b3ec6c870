"""Results files in tau2-bench's own format (its ``Results`` model: ``timestamp``, ``info``, ``tasks``,
``simulations``).

While a run goes on, each finished simulation is appended (and fsynced) to a checkpoint beside the results file,
``<results>.ckpt.jsonl``, and the results file itself is rewritten atomically every few seconds and at the end; so a
killed run loses no finished simulation, and a long run does not rewrite a growing file after every simulation.
:meth:`Results.load` merges a checkpoint it finds, so `view` and `--resume` see every finished simulation.

Each simulation record carries the whole trajectory (messages with tool calls), the reward breakdown, the
termination reason, timings (``start_time``, ``end_time``, ``duration``, per-message ``generation_time_seconds``)
and token usage (per message ``usage``, totals in ``info``).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keye_agent.errors import KeyeAgentError

from .messages import TauMessage
from .schema import Task

TERMINATION_REASONS = ("user_stop", "agent_stop", "max_steps", "timeout", "too_many_errors", "agent_error",
                       "user_error", "infrastructure_error", "context_window_exceeded", "unexpected_error")


class ResultsError(KeyeAgentError):
    """A results file that cannot be read, or does not belong to the run being resumed."""


class SimulationRun(BaseModel):
    """One simulation: tau2-bench's ``SimulationRun`` fields."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    task_id: str
    timestamp: str = Field(default_factory=lambda: datetime.now().isoformat())
    start_time: str
    end_time: str
    duration: float
    termination_reason: str
    agent_cost: float | None = None
    user_cost: float | None = None
    reward_info: dict[str, Any] | None = None
    messages: list[TauMessage] = Field(default_factory=list)
    trial: int | None = None
    seed: int | None = None
    mode: str = "half_duplex"
    info: dict[str, Any] | None = None

    @property
    def reward(self) -> float | None:
        return None if self.reward_info is None else float(self.reward_info.get("reward", 0.0))

    def to_tau2(self) -> dict[str, Any]:
        d = self.model_dump(mode="json", exclude={"messages"})
        d["messages"] = [m.to_tau2() for m in self.messages]
        return d


def _remove_stale_temps(path: Path) -> None:
    """Delete the temp files that a killed writer of ``path`` left (``.NAME.PID.tmp`` of a process now gone)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


class Results(BaseModel):
    model_config = ConfigDict(extra="allow")
    timestamp: str = Field(default_factory=lambda: datetime.now().isoformat())
    info: dict[str, Any]
    tasks: list[Task]
    simulations: list[SimulationRun] = Field(default_factory=list)

    def to_tau2(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "info": self.info,
            "tasks": [t.model_dump(mode="json", exclude_unset=True) for t in self.tasks],
            "simulations": [s.to_tau2() for s in self.simulations],
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically: a temp file in the same folder, flushed to disk, then renamed over the target."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                json.dump(self.to_tau2(), f, indent=2, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path, *, checkpoint: bool = True) -> Results:
        """Read a results file, and with ``checkpoint`` the simulations of its checkpoint not yet in it."""
        results = cls._load_file(Path(path))
        ckpt = checkpoint_path(path)
        if checkpoint and ckpt.is_file():
            have = {s.id for s in results.simulations}
            results.simulations += [s for s in read_checkpoint(ckpt) if s.id not in have]
        return results

    @classmethod
    def _load_file(cls, path: Path) -> Results:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ResultsError(f"cannot read results file {path}: {e.strerror}",
                               hint="pass the --save-to file of a `keye-agent tau run` (paths are relative to the "
                                    "current directory)") from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ResultsError(
                f"{path}:{e.lineno}:{e.colno}: the results file is not valid JSON ({e.msg})",
                hint="it was cut short or edited; move it away to start over, or restore it from a copy") from None
        if not isinstance(data, dict) or not {"info", "tasks", "simulations"} <= set(data):
            raise ResultsError(f"{path}: not a results file (a JSON object with info, tasks and simulations)",
                               hint="pass a file written by `keye-agent tau run --save-to` or by tau2-bench")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ResultsError(f"{path}: invalid results file at {where}: {err['msg']}",
                               hint="the file does not follow tau2-bench's results format") from None

    def done_keys(self) -> set[tuple[str, int]]:
        return {(s.task_id, s.trial or 0) for s in self.simulations}


def checkpoint_path(results_path: str | Path) -> Path:
    p = Path(results_path)
    return p.with_name(p.name + ".ckpt.jsonl")


def append_checkpoint(path: Path, sim: SimulationRun) -> None:
    """Append one simulation as a JSON line and push it to disk before returning."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(sim.to_tau2(), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_checkpoint(path: Path) -> list[SimulationRun]:
    """The simulations of a checkpoint. A cut last line (the writer was killed mid-line) is dropped; a bad line
    anywhere else is an error."""
    lines = path.read_text(encoding="utf-8").split("\n")
    sims = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            sims.append(SimulationRun.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as e:
            if i == len(lines):
                break  # no newline after it: the writer was killed in the middle of this line
            raise ResultsError(f"{path}:{i}: not a simulation record ({str(e).splitlines()[0]})",
                               hint="the checkpoint was edited or damaged; delete it to keep only the results "
                                    "file's simulations") from None
    return sims


def git_commit() -> str:
    """The project's commit, when run from a checkout; "unknown" otherwise."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
