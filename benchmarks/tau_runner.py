"""Runner overhead: simulations per minute with scripted participants (the oracle agent and user), at concurrency
1, 8 and 32. Concurrency 1 is the baseline, measured in the same run.

Two workloads: participants that answer at once (pure runner cost: orchestrator, agent loop, tools, evaluation
with its two database replays) and participants that wait ``--latency-ms`` per turn, as a served model would (where
concurrency pays). Correctness first: every simulation must score as the oracle's tests say, or no figure is
printed.

    .venv/bin/python benchmarks/tau_runner.py --tau2-data ../shared/tau2 [--domain mock] [--sims 200]
    .venv/bin/python benchmarks/tau_runner.py --ray [--ray-workers N]   # then: Ray workers vs this process

With ``--ray``, a second table: the same simulations (participants that answer at once, so the work is the
runner's own CPU time) run by this process and by Ray workers on a local cluster (started first, its start-up
reported apart; each Ray run includes building its workers), same concurrency, same rewards required.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

from keye_agent.tau import OracleAgent, OracleUser, RunSettings, load_domain, run_tasks
from keye_agent.tau.metrics import summarize


class Delayed:
    """A participant that waits before each answer, like a model behind a network."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.name, self.context_window = inner.name, inner.context_window

    async def agenerate(self, messages, tools, settings):
        await asyncio.sleep(self.delay_s)
        return await self.inner.agenerate(messages, tools, settings)

    async def astream(self, messages, tools, settings):
        async for c in self.inner.astream(messages, tools, settings):
            yield c

    def count_tokens(self, messages, tools=None):
        return self.inner.count_tokens(messages, tools)


def measure(domain, tasks, trials: int, concurrency: int, delay_s: float) -> tuple[float, float]:
    def agent(t, k):
        return Delayed(OracleAgent(t), delay_s) if delay_s else OracleAgent(t)

    def user(t, k):
        return Delayed(OracleUser(t), delay_s) if delay_s else OracleUser(t)

    t0 = time.perf_counter()
    res = asyncio.run(run_tasks(domain, tasks, agent, user, RunSettings(num_trials=trials,
                                                                         max_concurrency=concurrency)))
    dt = time.perf_counter() - t0
    s = summarize(res)
    return len(res.simulations) / dt * 60, s.avg_reward


def measure_ray(domain, tasks, trials: int, concurrency: int, workers: int | None, spec) -> tuple[float, float]:
    from keye_agent.tau.ray_runner import run_tasks_ray

    t0 = time.perf_counter()
    res = asyncio.run(run_tasks_ray(domain, tasks, spec,
                                    RunSettings(num_trials=trials, max_concurrency=concurrency), workers=workers))
    dt = time.perf_counter() - t0
    return len(res.simulations) / dt * 60, summarize(res).avg_reward


def ray_table(domain, tasks, trials: int, workers: int | None, args) -> None:
    import ray

    from keye_agent.tau.ray_runner import RunSpec

    spec = RunSpec(args.domain, "oracle", "oracle", tau2_data=args.tau2_data)
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    started = time.perf_counter() - t0
    try:
        n = workers or int(ray.cluster_resources().get("CPU", 1))
        measure_ray(domain, tasks[:2], 1, 8, workers, spec)  # warm-up: workers import keye-agent once
        rows = []
        for c in (8, 32):
            here, ref = measure(domain, tasks, trials, c, 0.0)
            spread, avg = measure_ray(domain, tasks, trials, c, workers, spec)
            if abs(avg - ref) > 1e-9:
                sys.exit(f"Ray run: average reward {avg} differs from this process's {ref}; not timing")
            rows.append((c, len(tasks) * trials, here, spread, spread / here))
    finally:
        ray.shutdown()
    print(f"\nRay: local cluster of {os.cpu_count()} CPUs started in {started:.1f} s (not in the figures); "
          f"{n} workers; participants answer at once")
    print("| concurrency | simulations | this process, sims/minute | Ray workers, sims/minute | Ray vs this process |")
    print("|---|---|---|---|---|")
    for c, sims, here, spread, ratio in rows:
        print(f"| {c} | {sims} | {here:,.0f} | {spread:,.0f} | {ratio:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", default="mock")
    ap.add_argument("--tau2-data", default=os.environ.get("KEYE_TAU2_DATA", str(Path(__file__).resolve().parents[2]
                                                                              / "shared" / "tau2")))
    ap.add_argument("--sims", type=int, default=200, help="simulations per measurement (rounded to whole trials)")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--ray", action="store_true", help="also compare Ray workers with this process")
    ap.add_argument("--ray-workers", type=int, default=None)
    args = ap.parse_args()
    domain = load_domain(args.domain, tau2_data=args.tau2_data)
    tasks = domain.select()
    trials = max(1, args.sims // len(tasks))
    # correctness gate: the oracle's average reward must match its known value before anything is timed
    _, ref = measure(domain, tasks, 1, 4, 0.0)
    measure(domain, tasks, 1, 1, 0.0)  # warm-up (imports, first schema builds)
    rows = []
    for delay in (0.0, args.latency_ms / 1000):
        base = None
        for c in (1, 8, 32):
            rate, avg = measure(domain, tasks, trials, c, delay)
            if abs(avg - ref) > 1e-9:
                sys.exit(f"concurrency {c}: average reward {avg} differs from the sequential {ref}; not timing")
            base = base or rate
            rows.append((f"{delay * 1000:g} ms", c, len(tasks) * trials, rate, rate / base))
    print(f"domain {domain.name}: {len(tasks)} tasks x {trials} trials per row; oracle avg reward {ref:.3f}; "
          f"python {platform.python_version()}, {os.cpu_count()} CPUs")
    print("| participant latency | concurrency | simulations | sims/minute | vs concurrency 1 |")
    print("|---|---|---|---|---|")
    for lat, c, n, rate, ratio in rows:
        print(f"| {lat} | {c} | {n} | {rate:,.0f} | {ratio:.2f}x |")
    if args.ray:
        ray_table(domain, tasks, trials, args.ray_workers, args)


if __name__ == "__main__":
    main()
