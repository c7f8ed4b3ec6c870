"""`keye-agent demo`: one small task through the real agent loop, real tools and (on local models) constrained tool
calls, with the whole trajectory printed.

The task is sized for the offline demo model, SmolLM2-135M: one lookup in a made-up staff directory (so the answer
can only come from the tool), then an answer. A 135M model is for smoke runs: it may copy the result wrongly or
ramble, and the demo prints whatever it does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from keye_agent.agent import Agent
from keye_agent.tools import Tool
from keye_agent.types import GenerationSettings

from .render import EventPrinter, Waiting, trace_table

DEMO_TASK = "Look up Ana Lima in the staff directory and tell me her phone extension."
DEMO_INSTRUCTIONS = "You answer questions about staff. Look people up in the directory before you answer."

# made up, so that the model cannot know the answer without calling the tool
DIRECTORY = {
    "ana lima": "Ana Lima: phone extension 4821, office 3.14, team Payments",
    "bruno costa": "Bruno Costa: phone extension 1177, office 2.02, team Search",
    "chen wei": "Chen Wei: phone extension 5309, office 1.08, team Infrastructure",
}


def lookup_person(name: str) -> str:
    """Look a person up in the staff directory."""
    key = " ".join(re.sub(r"[^a-z]+", " ", name.lower()).split())  # "ana_lima", "Ana  Lima" -> "ana lima"
    if key in DIRECTORY:
        return DIRECTORY[key]
    matches = [v for k, v in DIRECTORY.items() if key and (key in k or k in key)]
    if matches:
        return matches[0]
    return f"no one named {name!r} in the directory; known names: " + ", ".join(k.title() for k in DIRECTORY)


def demo_tools() -> list[Tool]:
    """The demo's one tool: a lookup with one short string argument (maxLength keeps a small model's argument
    from running on until max_tokens)."""
    return [Tool(
        name="lookup_person",
        description="Look a person up in the staff directory: phone extension, office and team.",
        parameters={"type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 40,
                                            "description": "The person's full name, e.g. \"Bruno Costa\"."}},
                    "required": ["name"], "additionalProperties": False},
        fn=lookup_person, inline=True, timeout_s=None, retries=0,
    )]


def demo_agent(backend: Any, max_steps: int = 4) -> Agent:
    """The demo's agent. Its first step must call a tool (``first_tool_choice="required"``); later steps use the
    default choice. With grammar-constrained decoding that first call is valid by construction; a small model left
    to choose tends to answer from thin air instead of looking anything up."""
    return Agent(backend, demo_tools(), instructions=DEMO_INSTRUCTIONS, max_steps=max_steps,
                 settings=GenerationSettings(max_tokens=96, temperature=0.0), first_tool_choice="required")


def demo(
    model: Annotated[str, typer.Option("--model", "-m", envvar="KEYE_AGENT_MODEL",
                                       help="demo (SmolLM2-135M on the CPU), openai:NAME, or a local model.")] = "demo",
    base_url: Annotated[str | None, typer.Option("--base-url", envvar="OPENAI_BASE_URL")] = None,
    task: Annotated[str, typer.Option("--task", help="The question to ask.")] = DEMO_TASK,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1)] = 4,
    save: Annotated[Path | None, typer.Option("--save", help="Save the trajectory as JSONL.")] = None,
) -> None:
    """Run a small lookup task end to end and print the trajectory (works offline with the demo model)."""

    from .driver import drive
    from .setup import build_model, model_options

    console = Console(highlight=False)
    err = Console(stderr=True)
    mopts = model_options(model, base_url)
    backend = build_model(mopts, err)
    console.print(f"[bold]model[/] {backend.name}")
    if mopts.spec.kind == "demo":
        console.print("[dim]SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI) on the CPU, tool calls constrained by "
                      "xgrammar. A 135M model is for offline smoke runs; answers may be wrong.[/]")
    console.print(f"[bold]task[/] {task}\n")
    # first step: a call is required (the grammar guarantees a valid one); then the model may answer freely
    agent = demo_agent(backend, max_steps)
    result = drive(agent, task, EventPrinter(console, show_steps=True, waiting=Waiting(err)))
    console.print()
    console.print(trace_table(result.trajectory))
    if save is not None:
        console.print(f"[dim]trajectory saved to {result.trajectory.save(save, result)}[/]")
    if not result.ok:
        raise typer.Exit(1)
