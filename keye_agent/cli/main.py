"""The `keye-agent` command: `run`, `chat`, `demo`, `serve`, `tools list|validate`, `version`, and the `sandbox`
and `tau` groups.

Errors print one line (and a hint), not a traceback; `--debug` anywhere on the command line shows tracebacks.
Usage errors (a missing argument, an unknown option, a bad value) print the usage line and one line of error and
exit 2. Every option is checked before a model loads.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from keye_agent.errors import ConfigError, KeyeAgentError, redact

from .driver import Abandoned, drive
from .render import EventPrinter, Waiting, tools_table
from .setup import (
    ModelOptions,
    ToolOptions,
    build_model,
    build_registry,
    check_tool_choice,
    close_tools,
    generation_settings,
    model_options,
    prepare_sandbox,
)
from .tracing import TraceOpt, close_tracer, open_tracer

app = typer.Typer(help="keye-agent: tool-calling agents around Keye-VL-2.0, from the terminal.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
tools_app = typer.Typer(help="List and check tools.", no_args_is_help=True)
app.add_typer(tools_app, name="tools")

DEFAULT_MODEL = "demo"

# options shared by `run`, `chat` and `tools list` (typer has no option groups: the same Annotated types)
ModelOpt = Annotated[str, typer.Option("--model", "-m", envvar="KEYE_AGENT_MODEL", help=(
    "openai:NAME (with --base-url), demo (SmolLM2-135M, offline), a .gguf file, a transformers checkpoint "
    "directory, keye:PRESET or a Keye checkpoint directory."))]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", envvar="OPENAI_BASE_URL",
                                                help="API root of an OpenAI-compatible server, e.g. http://localhost:8000/v1.")]
RandomOpt = Annotated[bool, typer.Option("--random-weights", help="Keye presets: random weights (plumbing checks).")]
ToolsOpt = Annotated[list[Path] | None, typer.Option("--tools", "-t", help="A YAML tool registry or a Python file of @tool functions (repeatable).")]
SandboxOpt = Annotated[bool, typer.Option("--sandbox/--no-sandbox", help="Add the run_code tool (Docker sandbox).")]
SearchOpt = Annotated[str | None, typer.Option("--search", help="Add web_search and fetch_url: ddgs, searxng:URL or local:PATH.")]
McpOpt = Annotated[list[str] | None, typer.Option("--mcp", help="Add the tools of an MCP server: [NAME=]URL or [NAME=]'COMMAND ARGS' (repeatable; NAME prefixes its tools).")]
ConstrainOpt = Annotated[bool | None, typer.Option("--constrained/--unconstrained", help="Local models: hold tool calls to the schemas with xgrammar (default on).", show_default=False)]
SystemOpt = Annotated[str | None, typer.Option("--system", help="Instructions (system prompt).")]
ToolChoiceOpt = Annotated[str, typer.Option("--tool-choice", help="auto, required, none, or a tool name.")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="Most tokens per model turn.")]
TempOpt = Annotated[float, typer.Option("--temperature", min=0.0, help="0 for greedy decoding.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Sampling seed (local models).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Approve state-changing tool calls without asking.")]


def _stderr() -> Console:
    return Console(stderr=True)


def _session(model: str, base_url: str | None, random_weights: bool, constrained: bool | None, tools: ToolOptions,
             tool_choice: str, err: Console, first_tool_choice: str | None = None) -> tuple[ModelOptions, Any]:
    """Check every option (model spec, tool files, --tool-choice, the Docker engine for --sandbox) before anything
    slow; returns the parsed model options and the tool registry (the caller closes it)."""
    mopts = model_options(model, base_url, random_weights, constrained)
    registry = build_registry(tools)
    try:
        check_tool_choice(tool_choice, registry)
        if first_tool_choice is not None:
            check_tool_choice(first_tool_choice, registry, option="--first-tool-choice")
        if tools.sandbox:
            prepare_sandbox(err)
    except BaseException:
        close_tools(registry)
        raise
    return mopts, registry


def _approver(console: Console, yes: bool):  # type: ignore[no-untyped-def]
    """Approval for `run`: --yes approves; a terminal asks; without one the call is refused (and the model told)."""
    def approve(tool: Any, call: Any) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            console.print(f"[yellow]refused {tool.name}: it changes state and there is no terminal to ask "
                          "(pass --yes to allow)[/]")
            return False
        args = json.dumps(call.arguments, ensure_ascii=False)
        answer = console.input(f"[yellow]allow {tool.name}({args})?[/] [y/N] ").strip().lower()
        return answer in ("y", "yes")
    return approve


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="The task, in words.")],
    model: ModelOpt = DEFAULT_MODEL,
    base_url: BaseUrlOpt = None,
    random_weights: RandomOpt = False,
    tools: ToolsOpt = None,
    sandbox: SandboxOpt = False,
    search: SearchOpt = None,
    mcp: McpOpt = None,
    constrained: ConstrainOpt = None,
    system: SystemOpt = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Most model steps.")] = 10,
    tool_choice: ToolChoiceOpt = "auto",
    first_tool_choice: Annotated[str | None, typer.Option(
        "--first-tool-choice", help="The first step's tool choice (e.g. required: start with a tool call).")] = None,
    max_tokens: MaxTokensOpt = 1024,
    temperature: TempOpt = 0.0,
    seed: SeedOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object (nothing else on stdout).")] = False,
    save: Annotated[Path | None, typer.Option("--save", help="Save the trajectory as JSONL.")] = None,
    yes: YesOpt = False,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Ask the model for whole answers, not streams (servers that cannot stream tool calls).")] = False,
    image: Annotated[list[Path] | None, typer.Option("--image", help="Attach an image file to the task (repeatable).")] = None,
    video: Annotated[list[Path] | None, typer.Option("--video", help="Attach a video file to the task (repeatable; sampled at 2 fps).")] = None,
    trace: TraceOpt = None,
) -> None:
    """Run one task to the end and print what happened."""
    from keye_agent.agent import Agent

    from .attach import attachment, with_attachments

    parts = [attachment(p, "image") for p in image or []] + [attachment(p, "video") for p in video or []]

    out = Console(stderr=as_json, highlight=False)  # with --json, progress goes to stderr and stdout holds only the JSON
    err = _stderr()
    tracer = open_tracer(trace)  # the SDK's tracer provider (atexit shuts it down should a check below fail)
    mopts, registry = _session(model, base_url, random_weights, constrained,
                               ToolOptions(files=list(tools or []), sandbox=sandbox, search=search, mcp=list(mcp or [])),
                               tool_choice, err, first_tool_choice)
    try:
        backend = build_model(mopts, err)
        agent = Agent(backend, registry, instructions=system, first_tool_choice=first_tool_choice,
                      stream_deltas=not no_stream,
                      settings=generation_settings(max_tokens, temperature, tool_choice, seed),
                      approve=_approver(out, yes), tracer=tracer)
        waiting = Waiting(err)
        result = drive(agent, with_attachments(task, parts), waiting if as_json else EventPrinter(out, show_steps=True, waiting=waiting),
                       max_steps=max_steps)
        waiting.stop()
    finally:
        close_tools(registry)
        close_tracer(tracer)
    saved = None
    if save is not None:
        saved = str(result.trajectory.save(save, result))
    if as_json:
        payload = {"status": result.status, "final_answer": result.final_answer, "steps": result.steps,
                   "usage": {"prompt_tokens": result.usage.prompt_tokens,
                             "completion_tokens": result.usage.completion_tokens},
                   "duration_s": round(result.duration_s, 3), "error": result.error, "model": backend.name,
                   "trajectory": saved}
        typer.echo(json.dumps(payload, ensure_ascii=False))
    elif saved:
        out.print(f"[dim]trajectory saved to {saved}[/]")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def chat(
    model: ModelOpt = DEFAULT_MODEL,
    base_url: BaseUrlOpt = None,
    random_weights: RandomOpt = False,
    tools: ToolsOpt = None,
    sandbox: SandboxOpt = False,
    search: SearchOpt = None,
    mcp: McpOpt = None,
    constrained: ConstrainOpt = None,
    system: SystemOpt = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Most model steps per message.")] = 10,
    tool_choice: ToolChoiceOpt = "auto",
    max_tokens: MaxTokensOpt = 1024,
    temperature: TempOpt = 0.0,
    seed: SeedOpt = None,
    history_file: Annotated[Path | None, typer.Option("--history-file", help="Input history (default ~/.keye_agent/history).")] = None,
    trace: TraceOpt = None,
) -> None:
    """Talk with an agent: streamed answers, tool panels, slash commands (/help lists them)."""
    from .repl import Repl

    err = _stderr()
    tracer = open_tracer(trace)
    mopts, registry = _session(model, base_url, random_weights, constrained,
                               ToolOptions(files=list(tools or []), sandbox=sandbox, search=search, mcp=list(mcp or [])),
                               tool_choice, err)
    try:
        repl = Repl(build_model(mopts, err), registry, model_options=mopts, instructions=system, max_steps=max_steps,
                    settings=generation_settings(max_tokens, temperature, tool_choice, seed),
                    history_file=history_file, tracer=tracer)
        repl.run()
    finally:
        close_tools(registry)
        close_tracer(tracer)


@tools_app.command("list")
def tools_list(
    tools: ToolsOpt = None,
    sandbox: SandboxOpt = False,
    search: SearchOpt = None,
    mcp: McpOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the OpenAI-format schemas as JSON.")] = False,
) -> None:
    """List the tools a session with these options would have (plus built-ins that can be added)."""
    from keye_agent.tools import available_builtins

    registry = build_registry(ToolOptions(files=list(tools or []), sandbox=sandbox, search=search,
                                          mcp=list(mcp or [])))
    try:
        if as_json:
            typer.echo(json.dumps(registry.schemas(), indent=2, ensure_ascii=False))
            return
        console = Console()
        if len(registry):
            console.print(tools_table(registry))
        else:
            console.print("no tools given (add --tools FILE, --sandbox, --search SPEC or --mcp SERVER)")
        console.print(f"built-in tools (entry points): {', '.join(available_builtins()) or 'none'}")
    finally:
        close_tools(registry)


@tools_app.command("validate")
def tools_validate(file: Annotated[Path, typer.Argument(help="A YAML tool registry or a Python file of @tool "
                                                               "functions.")]) -> None:
    """Check a YAML tool registry (every problem as file:line:column: message) or a Python tools file."""
    if not file.is_file():
        raise ConfigError(f"tool file not found: {file}", hint="give a .yaml/.yml registry or a .py file")
    if file.suffix == ".py":
        from .setup import load_python_tools

        names = [t.name for t in load_python_tools(file)]
        typer.echo(f"{file}: ok ({len(names)} tool{'s' * (len(names) != 1)}: {', '.join(names)})")
        return
    if file.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{file}: unknown tool file type {file.suffix!r}",
                          hint="use a .yaml/.yml registry or a .py file")
    try:
        from keye_agent.tools.yaml_registry import validate_registry_file
    except ImportError as e:
        raise ConfigError(f"YAML tool registries are not available in this installation ({e})") from None
    problems = validate_registry_file(file)
    for p in problems:
        typer.secho(p, fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{file}: ok")


@app.command()
def version() -> None:
    """Print the version of keye-agent and of the libraries it runs on."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    from keye_agent import __version__

    typer.echo(f"keye-agent {__version__}")
    for pkg in ("torch", "transformers", "xgrammar", "pydantic"):
        try:
            typer.echo(f"  {pkg} {v(pkg)}")
        except PackageNotFoundError:
            typer.echo(f"  {pkg} (not installed)")


def _mount() -> None:
    from . import demo, mcp, report, sandbox, serve

    app.command(name="demo")(demo.demo)
    app.command(name="report")(report.report)
    app.command(name="serve")(serve.serve)
    app.add_typer(mcp.app, name="mcp")
    app.add_typer(sandbox.app, name="sandbox")
    try:
        from . import tau
    except ImportError as e:
        reason = str(e)

        @app.command(name="tau", hidden=True)
        def tau_missing() -> None:
            raise ConfigError(f"the TAU runner is not available in this installation ({reason})")
    else:
        app.add_typer(tau.app, name="tau")


_mount()


def _print_error(e: BaseException) -> None:
    err = _stderr()
    if isinstance(e, KeyeAgentError):
        message = e.args[0] if e.args else str(e)
        err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        if e.hint:
            err.print(f"[dim]hint: {e.hint}[/]", highlight=False, soft_wrap=True)
    else:
        err.print(f"[bold red]error:[/] {type(e).__name__}: {redact(str(e))}", highlight=False)
        err.print("[dim]hint: this looks like a bug; rerun with --debug for the traceback[/]", highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `keye-agent` script."""
    rc = _main(argv)
    if Abandoned.work and argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)  # tools were closed in the commands' finally blocks; only the abandoned thread is left
    return rc


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` ("ClickException", "Exit", "Abort") from typer's own click (typer >= 0.23 vendors one as
    ``typer._click``, whose classes are not click's) and from click (older typer uses it): match either."""
    import importlib

    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


def _main(argv: list[str] | None) -> int:
    # transformers' weight-loading bars would break up the terminal output; the CLI shows its own progress
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if args[:2] == ["tau", "run"]:
        from .tau import ray_argv

        args = ray_argv(args)
    try:
        rc = app(args=args, prog_name="keye-agent", standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except _click_classes("Exit") as e:
        return int(getattr(e, "exit_code", 0))
    except _click_classes("Abort"):
        _stderr().print("aborted")
        return 130
    except _click_classes("ClickException") as e:
        e.show()  # type: ignore[attr-defined]  # a usage error: the usage line, then "Error: ..." (help for no args)
        return int(getattr(e, "exit_code", 1))
    except (KeyeAgentError, OSError) as e:
        if debug:
            traceback.print_exc()
        _print_error(e)
        return 2 if isinstance(e, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, the traceback under --debug
        if debug:
            traceback.print_exc()
        _print_error(e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
