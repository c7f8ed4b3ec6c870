"""Many simulations at once: tasks x trials, at most ``max_concurrency`` in flight, each evaluated as it ends and
checkpointed at once, so that ``resume`` after a crash or a kill loses no finished simulation."""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from keye_agent.types import GenerationSettings, ModelBackend

from .domain import Domain
from .evaluator import evaluate
from .orchestrator import Limits, run_simulation
from .results import Results, ResultsError, SimulationRun, append_checkpoint, checkpoint_path, git_commit
from .schema import Task

RERUN_ON_RESUME = ("unexpected_error", "infrastructure_error")

BackendFactory = Callable[[Task, int], ModelBackend]
"""Gives the backend for (task, trial): one shared model, or a fresh scripted one per simulation."""
Simulator = Callable[[Task, int, "int | None"], Awaitable[SimulationRun]]
"""Runs and scores the simulation of (task, trial, seed) somewhere: in this process, or on a Ray worker."""
ProgressCallback = Callable[[int, int, SimulationRun | None], None]


@dataclass
class RunSettings:
    num_trials: int = 1
    max_concurrency: int = 3
    seed: int | None = 300
    limits: Limits = field(default_factory=Limits)
    agent_settings: GenerationSettings | None = None
    user_settings: GenerationSettings | None = None
    user_guidelines: str | None = None
    judge: ModelBackend | None = None
    agent_name: str = ""
    user_name: str = ""
    save_to: str | Path | None = None
    resume: bool = False
    save_every_s: float = 10.0
    """How often the results file is rewritten during a run (every simulation is checkpointed at once anyway)."""
    agent_implementation: str | None = None
    """What ``info.agent_info.implementation`` says; by default "llm_agent", or "oracle_agent" / "idle_agent" when
    ``agent_name`` is oracle / idle (so scripted results never pass for a model's)."""
    user_implementation: str | None = None
    """Likewise for the user: "user_simulator", or "oracle_user" when ``user_name`` is oracle."""
    tracer: Any = None
    """An OpenTelemetry tracer (provider): a span per simulation, the agent's runs inside it (keye_agent.trace)."""


_SCRIPTED = {"agent": {"oracle": "oracle_agent", "idle": "idle_agent"}, "user": {"oracle": "oracle_user"}}


def implementation(side: str, name: str, explicit: str | None = None) -> str:
    """The implementation label of a results file's agent or user side."""
    if explicit:
        return explicit
    return _SCRIPTED[side].get(name, "llm_agent" if side == "agent" else "user_simulator")


def trial_seeds(seed: int | None, num_trials: int) -> list[int | None]:
    """One seed per trial, the same for every task, derived from the run's seed (so a resumed run uses the same)."""
    if seed is None:
        return [None] * num_trials
    rng = random.Random(seed)
    return [rng.randint(0, 1_000_000) for _ in range(num_trials)]


def _info(domain: Domain, s: RunSettings) -> dict[str, Any]:
    return {
        "git_commit": git_commit(), "num_trials": s.num_trials, "max_steps": s.limits.max_steps,
        "max_errors": s.limits.max_errors, "seed": s.seed,
        "user_info": {"implementation": implementation("user", s.user_name, s.user_implementation),
                      "llm": s.user_name,
                      "llm_args": {"temperature": (s.user_settings or GenerationSettings()).temperature}},
        "agent_info": {"implementation": implementation("agent", s.agent_name, s.agent_implementation),
                       "llm": s.agent_name,
                       "llm_args": {"temperature": (s.agent_settings or GenerationSettings()).temperature}},
        "environment_info": {"domain_name": domain.name, "policy": domain.policy},
        "text_streaming_config": None,
        "keye_agent": {"runner": "keye-agent tau", "domain_source": domain.source},
    }


def _open_results(domain: Domain, tasks: list[Task], s: RunSettings) -> Results:
    path = Path(s.save_to) if s.save_to else None
    if path is not None and not path.exists() and checkpoint_path(path).exists():
        raise ResultsError(f"{checkpoint_path(path)} exists but {path} does not",
                           hint="that checkpoint belongs to a run whose results file was removed; delete it too, "
                                "or choose another --save-to")
    if path is None or not path.exists():
        return Results(info=_info(domain, s), tasks=tasks)
    if not s.resume:
        raise ResultsError(f"{path} already exists", hint="pass --resume to continue that run, or another --save-to")
    old = Results.load(path)
    old_domain = (old.info.get("environment_info") or {}).get("domain_name")
    if old_domain != domain.name:
        raise ResultsError(f"{path} holds a run of domain {old_domain!r}, not {domain.name!r}",
                           hint="resume with the same --domain, or choose another --save-to")
    if old.info.get("num_trials") != s.num_trials or old.info.get("seed") != s.seed:
        raise ResultsError(f"{path} was run with --num-trials {old.info.get('num_trials')} --seed "
                           f"{old.info.get('seed')}; resuming needs the same values")
    known = {t.id for t in old.tasks}
    old.tasks = old.tasks + [t for t in tasks if t.id not in known]
    # simulations that broke on our side (not the agent's or the user's doing) are run again
    old.simulations = [x for x in old.simulations if x.termination_reason not in RERUN_ON_RESUME]
    return old


async def run_tasks(domain: Domain, tasks: list[Task], agent_factory: BackendFactory | None,
                    user_factory: BackendFactory | None, settings: RunSettings, *,
                    progress: ProgressCallback | None = None, simulate: Simulator | None = None) -> Results:
    """Run every (task, trial) not already in the results file; returns all results, old and new. Each finished
    simulation reaches the checkpoint at once, wherever ``simulate`` ran it (default: here, with the factories)."""
    s = settings
    if simulate is None and (agent_factory is None or user_factory is None):
        raise ResultsError("run_tasks needs an agent and a user factory, or a simulator")

    async def here(task: Task, trial: int, seed: int | None) -> SimulationRun:
        assert agent_factory is not None and user_factory is not None
        return await _simulate(domain, task, trial, seed, agent_factory, user_factory, s)

    run_one = simulate or here

    if s.num_trials < 1 or s.max_concurrency < 1:
        raise ResultsError("--num-trials and --max-concurrency must be at least 1")
    results = _open_results(domain, tasks, s)
    done = results.done_keys()
    seeds = trial_seeds(s.seed, s.num_trials)
    todo = [(t, k) for k in range(s.num_trials) for t in tasks if (t.id, k) not in done]
    total = len(todo) + sum(1 for t in tasks for k in range(s.num_trials) if (t.id, k) in done)
    finished = total - len(todo)
    if progress:
        progress(finished, total, None)
    sem = asyncio.Semaphore(s.max_concurrency)
    lock = asyncio.Lock()
    ckpt = checkpoint_path(s.save_to) if s.save_to else None
    if s.save_to and ckpt is not None:
        results.save(s.save_to)  # the file exists from the start, with the run's info, tasks and kept simulations,
        ckpt.unlink(missing_ok=True)  # so a checkpoint left by a killed run has nothing more to give
    last_save = time.monotonic()

    async def one(task: Task, trial: int) -> None:
        nonlocal finished, last_save
        async with sem:
            sim = await run_one(task, trial, seeds[trial])
        async with lock:
            results.simulations.append(sim)
            if ckpt is not None and s.save_to:
                append_checkpoint(ckpt, sim)
                if time.monotonic() - last_save >= s.save_every_s:
                    results.save(s.save_to)
                    last_save = time.monotonic()
            finished += 1
            if progress:
                progress(finished, total, sim)

    await asyncio.gather(*(one(t, k) for t, k in todo))
    order = {t.id: i for i, t in enumerate(results.tasks)}
    results.simulations.sort(key=lambda x: (order.get(x.task_id, len(order)), x.trial or 0))
    if s.save_to and ckpt is not None:
        results.save(s.save_to)
        ckpt.unlink(missing_ok=True)  # everything it held is in the results file now
    return results


async def _simulate(domain: Domain, task: Task, trial: int, seed: int | None, agent_factory: BackendFactory,
                    user_factory: BackendFactory, s: RunSettings) -> SimulationRun:
    if s.tracer is None:
        return await _simulate_once(domain, task, trial, seed, agent_factory, user_factory, s)
    from keye_agent.trace.workflow import traced_simulation

    return await traced_simulation(s.tracer, domain.name, task.id, trial, _simulate_once(
        domain, task, trial, seed, agent_factory, user_factory, s))


async def _simulate_once(domain: Domain, task: Task, trial: int, seed: int | None, agent_factory: BackendFactory,
                         user_factory: BackendFactory, s: RunSettings) -> SimulationRun:
    start = datetime.now().isoformat()
    try:
        sim = await run_simulation(task, domain, agent_factory(task, trial), user_factory(task, trial), trial=trial,
                                   seed=seed, limits=s.limits, agent_settings=s.agent_settings,
                                   user_settings=s.user_settings, user_guidelines=s.user_guidelines,
                                   agent_tracer=s.tracer)
        sim.reward_info = await evaluate(sim.messages, sim.termination_reason, task, domain, judge=s.judge)
        return sim
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - one broken simulation is recorded with its traceback; the run goes on
        return SimulationRun(task_id=task.id, start_time=start, end_time=datetime.now().isoformat(), duration=0.0,
                             termination_reason="unexpected_error", trial=trial, seed=seed,
                             reward_info={"reward": 0.0, "reward_basis": None,
                                          "info": {"note": f"{type(e).__name__}: {e}"}},
                             info={"error": f"{type(e).__name__}: {e}",
                                   "traceback": traceback.format_exc(limit=8)})
