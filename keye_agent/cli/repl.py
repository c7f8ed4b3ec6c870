"""`keye-agent chat`: the REPL.

prompt_toolkit input with persistent history, multi-line input (Esc then Enter, or a line ending in ``\\``), and
Tab completion of slash commands and tool names; answers stream as the model writes them; tool calls and results
show as panels. Ctrl-C interrupts the current step and keeps the session; Ctrl-D (or /exit) leaves. Tools that
change state ask first: y (yes), n (no), a (always, for this session).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console

from keye_agent.agent import Agent
from keye_agent.errors import KeyeAgentError
from keye_agent.tools import ToolRegistry
from keye_agent.types import GenerationSettings, Message, ModelBackend, StepRecord, Trajectory

from .attach import attachment, with_attachments
from .driver import drive_async
from .render import EventPrinter, Waiting, tools_table, trace_table
from .setup import ModelOptions, build_model, model_options

COMMANDS = {
    "/help": "this list",
    "/tools": "the tools the agent can call",
    "/reset": "forget the conversation and the trajectory",
    "/save": "/save PATH: save the session's trajectory (JSONL)",
    "/load": "/load PATH: continue from a saved trajectory",
    "/model": "/model [SPEC] [--random-weights]: show the model, or switch to another",
    "/system": "/system [TEXT]: show the instructions, or replace them",
    "/trace": "the session's steps as a table",
    "/attach": "/attach PATH: attach an image or video file to your next message",
    "/exit": "leave (Ctrl-D does too)",
}


def home_dir() -> Path:
    return Path(os.environ.get("KEYE_AGENT_HOME", Path.home() / ".keye_agent"))


class SlashCompleter(Completer):
    """Slash commands at the start of the input; tool names anywhere (for "use lookup_person to ...")."""

    def __init__(self, tool_names: Iterable[str]) -> None:
        self.tool_names = sorted(tool_names)

    def get_completions(self, document: Document, complete_event: Any) -> Iterable[Completion]:
        before = document.text_before_cursor
        word = document.get_word_before_cursor(WORD=True)
        if before.lstrip().startswith("/") and " " not in before.strip():
            for cmd, doc in COMMANDS.items():
                if cmd.startswith(word):
                    yield Completion(cmd, start_position=-len(word), display_meta=doc)
            return
        if word:
            for name in self.tool_names:
                if name.startswith(word) and name != word:
                    yield Completion(name, start_position=-len(word))


def _key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("escape", "enter")
    def _(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    @kb.add("enter")
    def _(event: Any) -> None:
        buf = event.current_buffer
        if buf.document.text_before_cursor.endswith("\\"):
            buf.delete_before_cursor(1)
            buf.insert_text("\n")
        else:
            buf.validate_and_handle()

    return kb


class Repl:
    """An interactive session around one :class:`Agent` configuration; the conversation carries over turns."""

    def __init__(self, model: ModelBackend, tools: ToolRegistry, *, model_options: ModelOptions | None = None,
                 instructions: str | None = None, max_steps: int = 10, settings: GenerationSettings | None = None,
                 history_file: Path | None = None, console: Console | None = None, tracer: Any = None) -> None:
        self.model = model
        self.tracer = tracer
        """An OpenTelemetry tracer (provider) for every message's run (``chat --trace``)."""
        self.tools = tools
        self.model_options = model_options
        self.instructions = instructions
        self.max_steps = max_steps
        self.settings = settings or GenerationSettings()
        self.console = console or Console(highlight=False)
        self.history: list[Message] = []
        self.trajectory = self._new_trajectory()
        self.attachments: list[Any] = []
        """Parts /attach queued for the next message."""
        self.always_allowed: set[str] = set()
        path = history_file or home_dir() / "history"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.session: PromptSession[str] = PromptSession(
            history=FileHistory(str(path)), completer=SlashCompleter(self._tool_names()),
            key_bindings=_key_bindings(), multiline=True, prompt_continuation="… ")

    def _tool_names(self) -> list[str]:
        return [t.name for t in self.tools]

    def _new_trajectory(self) -> Trajectory:
        return Trajectory(instructions=self.instructions, model=self.model.name)

    # ---- the loop --------------------------------------------------------------------------------------------

    def run(self) -> None:
        from keye_agent._sync import run_sync

        run_sync(self.main())

    async def main(self) -> None:
        c = self.console
        c.print(f"[bold]keye-agent chat[/] · model [cyan]{self.model.name}[/] · {len(self.tools)} tools · "
                "/help for commands, Ctrl-D to leave")
        if self.model.name.startswith("scripted"):
            c.print("[yellow]this is a scripted replay backend (tests and replays), not a model[/]")
        while True:
            try:
                line = await self.session.prompt_async("you> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                c.print("bye")
                return
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                try:
                    if not await self.command(text):
                        c.print("bye")
                        return
                except KeyeAgentError as e:
                    c.print(f"[red]error:[/] {e}", highlight=False)
                continue
            await self.ask(text)

    async def ask(self, text: str) -> None:
        """Run one user message through the agent, printing its events; Ctrl-C cancels the step in flight."""
        agent = Agent(self.model, self.tools, instructions=self.instructions, settings=self.settings,
                      approve=self._approve, tracer=self.tracer)
        printer = EventPrinter(self.console, waiting=Waiting(Console(stderr=True)), keep_all="/save keeps all")
        try:
            task, self.attachments = with_attachments(text, self.attachments), []
            result = await drive_async(agent, task, printer, history=self.history, second_interrupt_exits=False,
                                       max_steps=self.max_steps)
        finally:
            printer.finish()
        if result.status == "cancelled":
            self.console.print("[yellow]interrupted; the session goes on[/]")
        msgs = list(result.trajectory.messages)
        if self.instructions and msgs and msgs[0].role == "system":
            msgs = msgs[1:]  # the agent adds the instructions itself on the next turn
        self.history = msgs
        self._append_steps(result.trajectory.steps)
        self.trajectory.messages = list(result.trajectory.messages)
        if not self.trajectory.task:
            self.trajectory.task = text

    def _append_steps(self, steps: list[StepRecord]) -> None:
        base = len(self.trajectory.steps)
        for i, s in enumerate(steps, 1):
            self.trajectory.steps.append(s.model_copy(update={"index": base + i}))

    async def _approve(self, tool: Any, call: Any) -> bool:
        if tool.name in self.always_allowed:
            return True
        import json

        args = json.dumps(call.arguments, ensure_ascii=False)
        while True:
            try:
                answer = (await PromptSession[str]().prompt_async(
                    f"allow {tool.name}({args})? [y]es / [n]o / [a]lways this session: ")).strip().lower()
            except (KeyboardInterrupt, EOFError):
                return False
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no", ""):
                return False
            if answer in ("a", "always"):
                self.always_allowed.add(tool.name)
                return True

    # ---- slash commands ----------------------------------------------------------------------------------------

    async def command(self, text: str) -> bool:
        """Run a slash command; False means leave."""
        c = self.console
        name, _, arg = text.partition(" ")
        arg = arg.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            for cmd, doc in COMMANDS.items():
                c.print(f"[cyan]{cmd:<8}[/] {doc}", highlight=False)
        elif name == "/tools":
            c.print(tools_table(self.tools) if len(self.tools) else "no tools")
        elif name == "/reset":
            self.history = []
            self.trajectory = self._new_trajectory()
            c.print("conversation cleared")
        elif name == "/save":
            if not arg:
                raise KeyeAgentError("/save needs a path", hint="/save session.jsonl")
            self.trajectory.model = self.model.name
            c.print(f"saved {len(self.trajectory.steps)} steps to {self.trajectory.save(Path(arg).expanduser())}")
        elif name == "/load":
            if not arg:
                raise KeyeAgentError("/load needs a path", hint="/load session.jsonl")
            traj = Trajectory.load(Path(arg).expanduser())
            msgs = list(traj.messages)
            if msgs and msgs[0].role == "system":
                self.instructions = msgs[0].text
                msgs = msgs[1:]
            self.history, self.trajectory = msgs, traj
            c.print(f"loaded {len(traj.steps)} steps and {len(msgs)} messages from {arg}")
        elif name == "/model":
            if arg:
                t0 = time.perf_counter()
                opts = _model_command(arg, self.model_options)
                self.model = build_model(opts, Console(stderr=True))
                self.model_options = opts
                c.print(f"model is now [cyan]{self.model.name}[/] ({time.perf_counter() - t0:.1f} s to load)")
            else:
                c.print(f"model [cyan]{self.model.name}[/] · context window {self.model.context_window} tokens")
        elif name == "/system":
            if arg:
                self.instructions = arg
                c.print("instructions replaced (the conversation is kept)")
            else:
                c.print(self.instructions or "(no instructions)", highlight=False)
        elif name == "/attach":
            if not arg:
                raise KeyeAgentError("/attach needs a path", hint="/attach plot.png")
            part = attachment(arg)
            self.attachments.append(part)
            c.print(f"attached {part.type} {Path(arg).expanduser()} ({len(self.attachments)} for the next message)")
        elif name == "/trace":
            if self.trajectory.steps:
                c.print(trace_table(self.trajectory))
            else:
                c.print("no steps yet")
        else:
            raise KeyeAgentError(f"unknown command {name}", hint="/help lists the commands")
        return True


def _model_command(arg: str, current: ModelOptions | None) -> ModelOptions:
    """``/model SPEC [--random-weights] [--constrained|--unconstrained]``: the new model's options, checked before
    it loads; the base URL carries over."""
    words = arg.split()
    flags = {w for w in words if w.startswith("--")}
    unknown = flags - {"--random-weights", "--constrained", "--unconstrained"}
    specs = [w for w in words if not w.startswith("--")]
    if unknown or len(specs) != 1:
        raise KeyeAgentError(f"/model takes one model spec and --random-weights, --constrained or --unconstrained"
                             f"{'; unknown: ' + ', '.join(sorted(unknown)) if unknown else ''}",
                             hint="/model keye:tiny --random-weights")
    constrained = True if "--constrained" in flags else False if "--unconstrained" in flags else None
    return model_options(specs[0], current.base_url if current else None, "--random-weights" in flags, constrained)
