"""Simulations spread over a Ray cluster (``keye-agent tau run ... --ray [ADDRESS]``).

The driver, this process, keeps the results file exactly as the single-process runner does (:func:`run_tasks`): it
opens or resumes it, sends each (task, trial) to a worker, and checkpoints each simulation the moment it comes
back; so a killed driver loses no finished simulation, and ``--resume`` runs only what is missing. Workers are Ray
actors; each builds the domain and both participants from the run's :class:`RunSpec` on its own node (a model
spec is resolved there, so an ``openai:`` server at 127.0.0.1 is that node's own server) once, and then runs many
simulations at once.

Without an address, Ray starts a cluster on this machine for the run, on loopback only, and stops it at the end
(a driver killed with SIGKILL takes Ray's core processes with it, but Ray 2.60 leaves its dashboard and runtime-env
agents running: for long runs prefer ``ray start --head`` and its address). With one (``auto``,
``HOST:PORT`` of a ``ray start --head``, or ``ray://HOST:PORT``), every node needs keye-agent installed
(``pip install 'keye-agent[scale]'``) and a domain folder or ``--tau2-data`` at the same path.

Example::

    spec = RunSpec(domain="airline", agent_model="openai:qwen3", agent_base_url="http://127.0.0.1:8000/v1",
                   user_model="openai:qwen3", user_base_url="http://127.0.0.1:8000/v1")
    results = asyncio.run(run_tasks_ray(load_domain("airline"), tasks, spec, RunSettings(num_trials=4,
                                        max_concurrency=64, save_to="airline.json"), address="auto"))
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from keye_agent.errors import ConfigError

from .domain import Domain, load_domain
from .participants import judge_backend, participant_factory
from .results import Results, SimulationRun
from .runner import ProgressCallback, RunSettings, _simulate, run_tasks
from .schema import Task


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to rebuild the run on its node: specs, not objects (a model is never pickled)."""

    domain: str
    agent_model: str
    user_model: str
    agent_base_url: str | None = None
    user_base_url: str | None = None
    judge_model: str | None = None
    tau2_data: str | None = None
    task_set: str | None = None

    def portable(self) -> RunSpec:
        """Paths made absolute: a worker's working directory is not the driver's."""
        domain = str(Path(self.domain).resolve()) if Path(self.domain).expanduser().is_dir() else self.domain
        data = str(Path(self.tau2_data).expanduser().resolve()) if self.tau2_data else None
        return replace(self, domain=domain, tau2_data=data)


class SimulationWorker:
    """A Ray actor: the run's domain and participants, built once on its node; runs simulations concurrently."""

    def __init__(self, spec: RunSpec, settings: RunSettings) -> None:
        self.domain = load_domain(spec.domain, tau2_data=spec.tau2_data, task_set=spec.task_set)
        self.agent = participant_factory(spec.agent_model, "agent", spec.agent_base_url)
        self.user = participant_factory(spec.user_model, "user", spec.user_base_url)
        self.settings = replace(settings, judge=judge_backend(spec.judge_model))
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def where(self) -> str:
        return self.name

    async def simulate(self, task_data: dict[str, Any], trial: int, seed: int | None) -> dict[str, Any]:
        task = Task.model_validate(task_data)
        sim = await _simulate(self.domain, task, trial, seed, self.agent, self.user, self.settings)
        sim.info = {**(sim.info or {}), "ray_worker": self.name}
        return sim.to_tau2()


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise ConfigError("--ray needs Ray, which is not installed",
                          hint="pip install 'keye-agent[scale]'") from None
    return ray


def _lost(task: Task, trial: int, seed: int | None, start: str, error: BaseException) -> SimulationRun:
    """A simulation that a worker could not finish (its process or node died): it never ran to an end, so it is
    an infrastructure_error, left out of the figures and run again by --resume."""
    note = f"{type(error).__name__}: {' '.join(str(error).split())[:500]}"
    return SimulationRun(task_id=task.id, start_time=start, end_time=datetime.now().isoformat(), duration=0.0,
                         termination_reason="infrastructure_error", trial=trial, seed=seed,
                         reward_info={"reward": 0.0, "reward_basis": None, "info": {"note": note}},
                         info={"error": note})


def _check_reachable(address: str) -> None:
    """Refuse at once a HOST:PORT nothing listens on (Ray itself keeps retrying for minutes)."""
    host, _, port = address.rpartition(":")
    if address.startswith("ray://") or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}",
                          hint="start one with `ray start --head` and pass the address it prints, or give --ray "
                               "no address for a cluster on this machine") from None


def _init(ray: Any, address: str | None) -> None:
    if address is None:  # a cluster for this run only: on loopback, nothing of it is reachable from the network
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 _node_ip_address="127.0.0.1")
        return
    _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {e}",
                          hint="start it with `ray start --head` and pass the address it prints, or omit the "
                               "address for a cluster on this machine") from None


async def run_tasks_ray(domain: Domain, tasks: list[Task], spec: RunSpec, settings: RunSettings, *,
                        address: str | None = None, workers: int | None = None,
                        progress: ProgressCallback | None = None) -> Results:
    """:func:`run_tasks` with each simulation on a Ray worker. ``workers``: how many actors (default: one per CPU
    of the cluster); ``settings.max_concurrency`` bounds the simulations in flight over all of them."""
    ray = import_ray()
    if settings.tracer is not None:
        raise ConfigError("tracing does not reach Ray workers", hint="run without --ray to trace, or drop --trace")
    if workers is not None and workers < 1:
        raise ConfigError(f"--ray-workers must be at least 1, got {workers}")
    own = not ray.is_initialized()
    if own:
        _init(ray, None if address in (None, "", "local") else address)
    actors: list[Any] = []
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        n = workers or max(1, int(cpus))
        # a worker whose process dies is started again (its simulations in flight become infrastructure_error)
        actor_cls = ray.remote(SimulationWorker).options(num_cpus=min(1.0, cpus / n), max_restarts=-1,
                                                         max_task_retries=0,
                                                         max_concurrency=max(1, settings.max_concurrency))
        shipped = replace(settings, judge=None, tracer=None, save_to=None)
        actors = [actor_cls.remote(spec.portable(), shipped) for _ in range(n)]
        try:  # every worker builds the run before any simulation is sent: a node that cannot fails here, once
            await asyncio.gather(*(a.where.remote() for a in actors))
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None) or e
            raise ConfigError(f"a Ray worker could not build the run: {type(cause).__name__}: "
                              f"{' '.join(str(cause).split())[:600]}",
                              hint="every node needs keye-agent[scale] installed and the domain at the same path") from None
        in_flight = [0] * n

        async def simulate(task: Task, trial: int, seed: int | None) -> SimulationRun:
            i = min(range(n), key=in_flight.__getitem__)
            in_flight[i] += 1
            start = datetime.now().isoformat()
            try:
                data = await actors[i].simulate.remote(task.model_dump(mode="json", exclude_unset=True), trial, seed)
                return SimulationRun.model_validate(data)
            except ray.exceptions.RayError as e:
                return _lost(task, trial, seed, start, e)
            finally:
                in_flight[i] -= 1

        return await run_tasks(domain, tasks, None, None, settings, progress=progress, simulate=simulate)
    finally:
        for a in actors:
            ray.kill(a)
        if own:
            ray.shutdown()
