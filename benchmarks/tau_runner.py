"""Runner overhead: simulations per minute with scripted participants (the oracle agent and user), at concurrency
1, 8 and 32. Concurrency 1 is the baseline, measured in the same run.

Two workloads: participants that answer at once (pure runner cost: orchestrator, agent loop, tools, evaluation
with its two database replays) and participants that wait ``--latency-ms`` per turn, as a served model would (where
concurrency pays). Correctness first: every simulation must score as the oracle's tests say, or no figure is
printed.

    .venv/bin/python benchmarks/tau_runner.py --tau2-data ../shared/tau2 [--domain mock] [--sims 200]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", default="mock")
    ap.add_argument("--tau2-data", default=os.environ.get("KEYE_TAU2_DATA", str(Path(__file__).resolve().parents[2]
                                                                              / "shared" / "tau2")))
    ap.add_argument("--sims", type=int, default=200, help="simulations per measurement (rounded to whole trials)")
    ap.add_argument("--latency-ms", type=float, default=20.0)
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


if __name__ == "__main__":
    main()
