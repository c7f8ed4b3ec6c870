"""Progress on stderr: the one home for what a person waits for in the CLI. A :func:`spinner` for one wait (a model
loading, the sandbox image building, the model's first token) and a :class:`SimulationBar` over a TAU run (one line
per finished simulation, the bar with the running average reward).

Both draw on a stderr console, so stdout stays the command's own (`run --json` prints one JSON document). On a
pipe or a file rich draws nothing live: a spinner leaves no trace, a :meth:`Spinner.log` line is printed plainly
(build logs stay in CI output), and the bar prints its last state once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.status import Status

if TYPE_CHECKING:
    from keye_agent.tau.results import SimulationRun


def err_console() -> Console:
    """The console progress draws on: stderr."""
    return Console(stderr=True)


class Spinner:
    """A spinner with a line of text; a context manager, or :meth:`start`/:meth:`stop` by hand (the wait for a
    first token starts and stops with events)."""

    def __init__(self, console: Console, text: str) -> None:
        self.console = console
        self.text = text
        self._status = Status(escape(text), console=console, spinner="dots")

    def start(self) -> Spinner:
        self._status.start()
        return self

    def stop(self) -> None:
        self._status.stop()

    def update(self, text: str) -> None:
        self.text = text
        self._status.update(escape(text))

    def log(self, line: str) -> None:
        """A line of a long job's log: on a terminal it becomes the spinner's text (after the wait's own); else it
        is printed, so a log file keeps it."""
        if self.console.is_terminal:
            self._status.update(f"{escape(self.text)}: [dim]{escape(line[-120:])}[/]")
        else:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def __enter__(self) -> Spinner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spinner(console: Console, text: str) -> Spinner:
    """A spinner on ``console`` saying what is being waited for: ``with spinner(err, "loading the model"): ...``."""
    return Spinner(console, text)


class SimulationBar:
    """A TAU run's progress: a bar over its simulations with the running average reward and the simulations now
    running, and a line per finished simulation (task, trial, how it ended, reward, seconds). Called as the
    runner's ``progress`` callback; :meth:`started` is told when a simulation starts."""

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.rewards: list[float] = []
        self.running: list[str] = []
        self._progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("simulations · avg reward {task.fields[avg]}"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), TextColumn("[dim]{task.fields[running]}"), console=console, transient=False)
        self._job = self._progress.add_task(label, total=None, avg="-", running="")

    def started(self, task_id: str, trial: int) -> None:
        self.running.append(f"{task_id}#{trial}")
        self._progress.update(self._job, running=self._running_text())

    def _running_text(self) -> str:
        if not self.running:
            return ""
        shown = ", ".join(self.running[:2])
        return f"running {shown}" + (f" +{len(self.running) - 2}" if len(self.running) > 2 else "")

    @property
    def average(self) -> float | None:
        return sum(self.rewards) / len(self.rewards) if self.rewards else None

    def __call__(self, done: int, total: int, sim: SimulationRun | None) -> None:
        if sim is not None:
            key = f"{sim.task_id}#{sim.trial}"
            if key in self.running:
                self.running.remove(key)
            reward = sim.reward or 0.0
            self.rewards.append(reward)
            self._progress.console.print(
                f"{sim.task_id} trial {sim.trial}: {sim.termination_reason}, reward {reward:g}, "
                f"{sim.duration:.1f} s", highlight=False, markup=False, soft_wrap=True)
        avg = f"{self.average:.3f}" if self.average is not None else "-"
        self._progress.update(self._job, completed=done, total=total, avg=avg, running=self._running_text())

    def __enter__(self) -> SimulationBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()
