"""`keye-agent tau`: run TAU2-style simulations and read their results.

    keye-agent tau run --domain mock --tau2-data ~/tau2-bench --agent-model MODEL --user-model MODEL \\
        --num-trials 4 --max-concurrency 8 --save-to results.json
    keye-agent tau run ... --save-to results.json --resume      # after a crash or Ctrl-C: finish the rest
    keye-agent tau view results.json                            # the summary and a list of simulations
    keye-agent tau view results.json --task-id update_task_1 --trial 0
    keye-agent tau run ... --ray                                # simulations on Ray workers (a local cluster)
    keye-agent tau run ... --ray HEAD:6379 --resume             # or a running cluster; resumable as ever

``--agent-model oracle`` and ``--user-model oracle`` run the scripted oracle (gold actions), ``--agent-model idle``
an agent that does nothing: both check a domain and the runner without a model.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from keye_agent.errors import KeyeAgentError
from keye_agent.tau import (
    Limits,
    Results,
    RunSettings,
    Summary,
    load_domain,
    run_tasks,
    summarize,
)
from keye_agent.tau.participants import participant_factory
from keye_agent.types import GenerationSettings, ModelBackend

from .progress import SimulationBar, err_console, spinner
from .tracing import TraceOpt, close_tracer, open_tracer

app = typer.Typer(help="TAU2-style simulations: an agent, a simulated user and a domain, scored as tau2-bench does.",
                  no_args_is_help=True)
console = Console()

def _fail(e: KeyeAgentError) -> None:
    """An error of the run's set-up or of a results file: one line and its hint on stderr, exit 2."""
    err = err_console()
    err.print(f"[bold red]error:[/] {e.args[0] if e.args else e}", highlight=False, soft_wrap=True)
    if e.hint:
        err.print(f"[dim]hint: {e.hint}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _backend_factory(spec: str, side: str, base_url: str | None):
    """(task, trial) -> backend (keye_agent.tau.participants); a model is built once, under a spinner."""
    if spec == "idle" and side != "agent":
        raise typer.BadParameter("'idle' is an agent, not a user", param_hint="--user-model")
    return participant_factory(spec, side, base_url, loader=_resolve)


def ray_argv(args: list[str]) -> list[str]:
    """``tau run ... --ray`` without an address means a cluster on this machine; typer has no options with an
    optional value, so the bare flag gets the value ``local`` before parsing (keye_agent.cli.main calls this)."""
    for i, a in enumerate(args):
        if a == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            return [*args[:i + 1], "local", *args[i + 1:]]
    return args


def _resolve(spec: str, base_url: str | None) -> ModelBackend:
    from keye_agent.backends import load_model, parse_model_spec

    parsed = parse_model_spec(spec)
    if parsed.kind == "scripted":
        return load_model(parsed, base_url=base_url)
    with spinner(err_console(), f"loading the model {spec}"):
        return load_model(parsed, base_url=base_url)


def _split_ids(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


@app.command("run")
def run(
    domain: Annotated[str, typer.Option("--domain", help="mock, airline, retail, store, or the path of a domain folder")],
    agent_model: Annotated[str, typer.Option("--agent-model", help="model spec, or oracle / idle")],
    user_model: Annotated[str, typer.Option("--user-model", help="model spec, or oracle")],
    num_trials: Annotated[int, typer.Option("--num-trials", min=1, help="trials per task (pass^1..pass^k)")] = 1,
    num_tasks: Annotated[int | None, typer.Option("--num-tasks", min=1, help="only the first N tasks")] = None,
    task_ids: Annotated[list[str] | None,
                        typer.Option("--task-ids", help="task ids (repeat or comma-separate)")] = None,
    task_split: Annotated[str, typer.Option("--task-split", help="split of the task set")] = "base",
    task_set: Annotated[str | None, typer.Option("--task-set", help="e.g. v0.1.0: the paper-release tasks")] = None,
    tau2_data: Annotated[Path | None, typer.Option("--tau2-data", help="a tau2-bench checkout or data folder "
                                                                         "(default $KEYE_TAU2_DATA)")] = None,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1)] = 3,
    seed: Annotated[int, typer.Option("--seed", help="base seed; each trial derives its own")] = 300,
    save_to: Annotated[Path | None, typer.Option("--save-to", help="results file (tau2-bench's format)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run saved in --save-to")] = False,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="messages per simulation")] = 200,
    max_errors: Annotated[int, typer.Option("--max-errors", min=1, help="failed tool calls per simulation")] = 10,
    timeout: Annotated[float | None, typer.Option("--timeout", help="seconds per simulation")] = None,
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="model that judges NL assertions")] = None,
    agent_base_url: Annotated[str | None, typer.Option("--agent-base-url")] = None,
    user_base_url: Annotated[str | None, typer.Option("--user-base-url")] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="agent and user sampling temperature")] = 0.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="tokens per model turn")] = 1024,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    trace: TraceOpt = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="[ADDRESS]", help="spread the simulations over a Ray cluster: alone, one started on this "
        "machine for the run; or the address of a running one (auto, HOST:PORT, ray://HOST:PORT)")] = None,
    ray_workers: Annotated[int | None, typer.Option("--ray-workers", min=1, help="with --ray: worker actors "
                                                    "(default one per CPU of the cluster)")] = None,
) -> None:
    """Run simulations of a domain's tasks and score them."""
    tracer = open_tracer(trace)
    try:
        from keye_agent.backends import parse_model_spec

        for spec in (agent_model, user_model, judge_model):  # every spec checked before any model loads
            if spec is not None and spec not in ("oracle", "idle"):
                parse_model_spec(spec)
        dom = load_domain(domain, tau2_data=tau2_data, task_set=task_set)
        tasks = dom.select(split=task_split, task_ids=_split_ids(task_ids), num_tasks=num_tasks)
        if ray is None:
            agent_f = _backend_factory(agent_model, "agent", agent_base_url)
            user_f = _backend_factory(user_model, "user", user_base_url)
            judge = _resolve(judge_model, None) if judge_model else None
        else:  # the workers build the participants on their nodes; none is loaded here
            if user_model == "idle":
                raise typer.BadParameter("'idle' is an agent, not a user", param_hint="--user-model")
            agent_f = user_f = judge = None
        if save_to is None:
            stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
            save_to = Path("results") / f"{stamp}_{dom.name}_{agent_model.replace('/', '_')}.json"
        settings = RunSettings(
            num_trials=num_trials, max_concurrency=max_concurrency, seed=seed,
            limits=Limits(max_steps=max_steps, max_errors=max_errors, timeout_s=timeout),
            agent_settings=GenerationSettings(temperature=temperature, max_tokens=max_tokens),
            user_settings=GenerationSettings(temperature=temperature, max_tokens=max_tokens),
            judge=judge, agent_name=agent_model, user_name=user_model, save_to=save_to, resume=resume, tracer=tracer)
        with SimulationBar(err_console(), dom.name) as bar:  # on stderr: with --json, stdout holds the summary only
            if ray is None:
                def agent_started(task: Any, trial: int) -> Any:  # asked for as each simulation starts
                    bar.started(task.id, trial)
                    return agent_f(task, trial)

                results = asyncio.run(run_tasks(dom, tasks, agent_started, user_f, settings, progress=bar))
            else:
                from keye_agent.tau.ray_runner import RunSpec, run_tasks_ray

                spec = RunSpec(domain, agent_model, user_model, agent_base_url, user_base_url, judge_model,
                               str(tau2_data) if tau2_data else None, task_set)
                results = asyncio.run(run_tasks_ray(dom, tasks, spec, settings, address=ray, workers=ray_workers,
                                                    progress=bar))
    except KeyeAgentError as e:
        _fail(e)
        return
    finally:
        close_tracer(tracer)
    summary = summarize(results)
    if as_json:
        print(json.dumps({**summary.__dict__, "pass_hat": {str(k): v for k, v in summary.pass_hat.items()},
                          "save_to": str(save_to)}))
    else:
        _print_summary(summary)
        console.print(f"results: {save_to}")


def _print_summary(*summaries: Summary, sources: list[str] | None = None) -> None:
    """One row per results file (so per domain): tasks, simulations, average reward, pass^1..pass^k."""
    table = Table(title="TAU2 results")
    table.add_column("domain")
    if sources:
        table.add_column("file")
    for col in ("tasks", "simulations", "avg reward"):
        table.add_column(col, justify="right")
    k_max = max((max(s.pass_hat, default=0) for s in summaries), default=0)
    for k in range(1, k_max + 1):
        table.add_column(f"pass^{k}", justify="right")
    for i, s in enumerate(summaries):
        row = [s.domain, *([sources[i]] if sources else []), str(s.num_tasks), str(s.num_simulations),
               f"{s.avg_reward:.3f}"]
        row += [f"{s.pass_hat[k]:.3f}" if k in s.pass_hat else "-" for k in range(1, k_max + 1)]
        table.add_row(*row)
    console.print(table)
    for i, s in enumerate(summaries):
        where = f"{sources[i]}: " if sources else ""
        console.print(where + "ended by: " + ", ".join(f"{k} {v}" for k, v in sorted(s.termination.items())))
        for note in s.notes:
            console.print(f"[yellow]note:[/yellow] {where}{note}")


@app.command("view")
def view(
    paths: Annotated[list[Path], typer.Argument(help="results files (several: one summary row each)")],
    task_id: Annotated[str | None, typer.Option("--task-id", help="show this task's simulation")] = None,
    trial: Annotated[int, typer.Option("--trial", help="with --task-id: which trial")] = 0,
    sim_id: Annotated[str | None, typer.Option("--sim", help="show the simulation with this id")] = None,
) -> None:
    """Show results files: their summary and simulations, or one simulation in full."""
    try:
        loaded = [Results.load(p) for p in paths]
    except KeyeAgentError as e:
        _fail(e)
        return
    if task_id is None and sim_id is None:
        if len(loaded) > 1:
            _print_summary(*(summarize(r) for r in loaded), sources=[str(p) for p in paths])
            return
        results = loaded[0]
        _print_summary(summarize(results))
        table = Table(title="simulations")
        for col in ("task", "trial", "ended by", "reward", "breakdown", "messages", "seconds"):
            table.add_column(col)
        for s in results.simulations:
            bd = (s.reward_info or {}).get("reward_breakdown") or {}
            table.add_row(s.task_id, str(s.trial), s.termination_reason, f"{s.reward if s.reward is not None else '-'}",
                          " ".join(f"{k}={v:g}" for k, v in bd.items()), str(len(s.messages)), f"{s.duration:.2f}")
        console.print(table)
        for s in results.simulations:  # why each simulation that did not end by a stop word ended
            if s.termination_reason not in ("user_stop", "agent_stop"):
                for note in _sim_notes(s):
                    console.print(f"{s.task_id} trial {s.trial}: {s.termination_reason}: {note}",
                                  highlight=False, markup=False, soft_wrap=True)
        return
    sims = [s for r in loaded for s in r.simulations
            if s.id == sim_id or (sim_id is None and s.task_id == task_id and s.trial == trial)]
    if not sims:
        what = f"id {sim_id}" if sim_id else f"of task {task_id!r} trial {trial}"
        _fail(KeyeAgentError(f"no simulation {what} in {', '.join(str(p) for p in paths)}",
                             hint="run `keye-agent tau view FILE` to list them"))
        return
    _print_simulation(sims[0])


def _sim_notes(s) -> list[str]:
    """The orchestrator's notes on how a simulation went (why it ended, when it ended in error)."""
    notes = (s.info or {}).get("notes") or []
    return [str(n) for n in notes]


def _print_simulation(s) -> None:
    ri: dict[str, Any] = s.reward_info or {}
    console.print(f"[bold]{s.task_id}[/bold] trial {s.trial}  id {s.id}")
    console.print(f"ended by {s.termination_reason} after {s.duration:.2f} s; reward {ri.get('reward')} "
                  f"{ri.get('reward_breakdown') or ''}")
    for n in _sim_notes(s):
        console.print(f"why: {n}", highlight=False, markup=False, soft_wrap=True)
    usage = (s.info or {}).get("usage")
    if usage:
        console.print(f"tokens: agent {usage['agent']['prompt_tokens']}+{usage['agent']['completion_tokens']}, "
                      f"user {usage['user']['prompt_tokens']}+{usage['user']['completion_tokens']}")
    for m in s.messages:
        style = {"assistant": "cyan", "user": "green", "tool": "magenta", "system": "dim"}[m.role]
        who = m.role if m.role != "tool" else f"tool→{m.requestor or 'assistant'}"
        for c in m.tool_calls or []:
            line = Text(who, style=style)
            line.append(f" calls {c.name}({json.dumps(c.arguments, ensure_ascii=False)})")
            console.print(line)
        if m.content:
            line = Text(who, style=style)
            line.append(" ")
            if m.error:
                line.append("error ", style="red")
            line.append(m.content)
            console.print(line)
    for key, label in (("action_checks", "action"), ("communicate_checks", "communicate"),
                       ("env_assertions", "env assertion"), ("nl_assertions", "NL assertion")):
        for c in ri.get(key) or []:
            ok = c.get("met", c.get("action_match"))
            what = c.get("info") or c.get("nl_assertion") or (c.get("action") or {}).get("name") \
                or (c.get("env_assertion") or {}).get("func_name")
            console.print(f"{label}: {what} -> {'met' if ok else '[red]not met[/red]'}")
    db = ri.get("db_check")
    if db:
        verdict = "matches the gold state" if db["db_match"] else "[red]differs from the gold state[/red]"
        console.print(f"database: {verdict}")
    note = (ri.get("info") or {}).get("note")
    if note:
        console.print(f"note: {note}")
