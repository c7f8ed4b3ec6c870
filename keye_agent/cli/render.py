"""Showing a run on the terminal: streamed text, a panel per tool call and result, errors in red, a spinner while
the model has not written anything yet, and tables of tools and of a trajectory. Reads the agent's event stream,
like every other consumer."""

from __future__ import annotations

import asyncio
import json

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from keye_agent.agent.events import (
    ErrorEvent,
    Event,
    FinalAnswer,
    Note,
    ReasoningDelta,
    RunFinished,
    StepStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from keye_agent.tools import ToolRegistry
from keye_agent.types import RunResult, ToolCall, Trajectory

from .progress import Spinner, spinner

RESULT_CHARS = 800


def _cut(text: str, limit: int, keep_all: str) -> tuple[str, str | None]:
    if len(text) <= limit:
        return text, None
    return text[:limit], f"(result cut for display: {len(text) - limit} more characters; {keep_all})"


class Waiting:
    """A spinner on ``console`` (stderr) from the start of each step until the model's first output: the wait for a
    first token is seen as work, not as a hang. Transient: on a file or a pipe it prints nothing."""

    delay_s = 0.25
    """How long a step may wait before the spinner shows: a step that answers sooner starts no spinner (each one
    is a refresh thread, started and joined)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Spinner | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, ev: Event) -> None:
        self.stop()
        if not isinstance(ev, StepStarted) or not self.console.is_terminal:
            return  # on a file or a pipe a spinner shows nothing: none is started
        text = f"step {ev.step}: waiting for the model's first token"
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._start(text)
            return
        self._timer = loop.call_later(self.delay_s, self._start, text)

    def _start(self, text: str) -> None:
        self._timer = None
        self._status = spinner(self.console, text).start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._status is not None:
            self._status.stop()
            self._status = None


class EventPrinter:
    """Prints events as they come. ``show_steps`` adds a rule per step (the one-shot `run` command).
    ``waiting``: a :class:`Waiting` spinner to run between a step's start and its first output. ``keep_all`` says
    where the full text of a result cut for display is kept."""

    def __init__(self, console: Console, *, show_steps: bool = False, result_chars: int = RESULT_CHARS,
                 waiting: Waiting | None = None, keep_all: str = "--save keeps all") -> None:
        self.console = console
        self.show_steps = show_steps
        self.result_chars = result_chars
        self.waiting = waiting
        self.keep_all = keep_all
        self._open_line = False  # streamed text without its closing newline yet
        self._streamed_text = False
        self._calls: dict[str, ToolCall] = {}
        self._errors_shown: set[str] = set()

    def _end_line(self) -> None:
        if self._open_line:
            self.console.print()
            self._open_line = False

    def __call__(self, ev: Event) -> None:
        if self.waiting is not None:
            self.waiting.stop()
        self._show(ev)
        if self.waiting is not None and isinstance(ev, StepStarted):
            self.waiting(ev)

    def _show(self, ev: Event) -> None:
        c = self.console
        if isinstance(ev, StepStarted):
            self._end_line()
            self._streamed_text = False
            if self.show_steps:
                c.rule(f"step {ev.step}", style="dim")
        elif isinstance(ev, TextDelta):
            c.print(ev.text, end="", markup=False, highlight=False, soft_wrap=True)
            self._open_line = not ev.text.endswith("\n")
            self._streamed_text = True
        elif isinstance(ev, ReasoningDelta):
            c.print(Text(ev.text, style="dim italic"), end="", soft_wrap=True)
            self._open_line = not ev.text.endswith("\n")
        elif isinstance(ev, ToolCallStarted):
            self._end_line()
            self._calls[ev.call.id] = ev.call
            args = json.dumps(ev.call.arguments, ensure_ascii=False, indent=2)
            c.print(Panel(Syntax(args, "json", theme="ansi_dark", word_wrap=True),
                          title=f"[bold cyan]call[/] {escape(ev.call.name)}", title_align="left",
                          border_style="cyan", expand=False))
        elif isinstance(ev, ToolCallFinished):
            self._end_line()
            r = ev.result
            meta = f"{r.duration_s:.2f} s" + (f", {r.attempts} attempts" if r.attempts > 1 else "")
            if r.ok:
                body, note = _cut(r.content, self.result_chars, self.keep_all)
                text = Text(body)
                if note:
                    text.append("\n" + note, style="yellow")
                c.print(Panel(text, title=f"[green]result[/] {escape(r.name)} [dim]({meta})[/]",
                              title_align="left", border_style="green", expand=False))
            else:
                c.print(Panel(Text(f"{r.error_type}: {r.error_detail}", style="red"),
                              title=f"[red]failed[/] {escape(r.name)} [dim]({meta})[/]", title_align="left",
                              border_style="red", expand=False))
        elif isinstance(ev, ErrorEvent):
            self._end_line()
            if ev.kind != "tool":  # failed tools already have their red panel
                c.print(Text(f"✗ {ev.kind}: {ev.message}", style="red"))
                self._errors_shown.add(ev.message)
        elif isinstance(ev, Note):
            self._end_line()
            c.print(Text(f"note: {ev.message}", style="yellow"))
        elif isinstance(ev, FinalAnswer):
            self._end_line()
            if not self._streamed_text or self.show_steps:
                c.print(Panel(Text(ev.text), title="[bold]final answer[/]", title_align="left",
                              border_style="bold", expand=False))
        elif isinstance(ev, RunFinished):
            self._end_line()
            c.print(summary_line(ev.result, with_error=ev.result.error not in self._errors_shown))

    def finish(self) -> None:
        if self.waiting is not None:
            self.waiting.stop()
        self._end_line()


def summary_line(result: RunResult, *, with_error: bool = True) -> Text:
    """Status, steps, tokens and time; and the error that ended the run, unless it was just printed."""
    u = result.usage
    text = (f"{result.status} · {result.steps} step{'s' * (result.steps != 1)} · {u.prompt_tokens} prompt + "
            f"{u.completion_tokens} completion tokens · {result.duration_s:.1f} s")
    if result.error and not result.ok and with_error:
        text += f" · {result.error}"
    return Text(text, style="dim" if result.ok else "red")


def tools_table(registry: ToolRegistry) -> Table:
    table = Table(title="tools", title_justify="left")
    table.add_column("name", style="cyan", no_wrap=True)
    table.add_column("arguments")
    table.add_column("description")
    table.add_column("flags", style="yellow")
    for t in registry:
        props = t.parameters.get("properties", {})
        required = set(t.parameters.get("required", []))
        args = ", ".join(f"{k}{'' if k in required else '?'}: {v.get('type', 'any') if isinstance(v, dict) else 'any'}"
                         for k, v in props.items())
        flags = " ".join(f for f, on in (("mutates", t.mutates_state), ("approval", t.needs_approval)) if on)
        table.add_row(t.name, args, t.description.strip().splitlines()[0], flags)
    return table


def trace_table(traj: Trajectory) -> Table:
    """One row per step: what the model did, what the tools returned, errors, time and tokens."""
    table = Table(title=f"trajectory · {len(traj.steps)} steps · model {traj.model}", title_justify="left")
    for col, style in (("#", "dim"), ("model said", ""), ("tool results", ""), ("errors", "red"),
                       ("time", "dim"), ("tokens", "dim")):
        table.add_column(col, style=style)
    for i, s in enumerate(traj.steps, 1):
        said = ""
        if s.turn is not None:
            calls = [f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in s.turn.tool_calls]
            said = "\n".join(([s.turn.text.strip()[:120]] if s.turn.text.strip() else []) + calls)
        results = "\n".join(f"{'✓' if r.ok else '✗'} {r.name}: {(r.content if r.ok else r.error or '')[:80]}"
                            for r in s.tool_results)
        table.add_row(str(i), said, results, "\n".join(str(e)[:120] for e in s.errors), f"{s.duration_s:.2f} s",
                      str(s.usage.total_tokens))
    return table
