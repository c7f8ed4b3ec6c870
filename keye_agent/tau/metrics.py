"""pass^k and the run summary.

pass^k (from the tau-bench paper): the chance that k trials of a task, drawn from its n trials, all succeed,
averaged over tasks: ``mean_t C(c_t, k) / C(n_t, k)``, where c_t of the n_t trials of task t scored 1.

As tau2-bench computes it (``tau2.metrics.agent_metrics.compute_metrics``): simulations that ended in
``infrastructure_error`` never ran and are left out of every figure; k goes up to the smallest number of trials a
task has left (and at most ``info.num_trials``); the average reward is over the simulations counted. A test checks
these figures against tau2-bench's own on one results file (tests/tau/fixtures/tau2_metrics_crosscheck.json).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from .results import Results

INFRA_ERROR = "infrastructure_error"


def is_success(reward: float | None) -> bool:
    return reward is not None and abs(reward - 1.0) <= 1e-6


def pass_hat_k(n: int, c: int, k: int) -> float:
    if not 0 <= c <= n:
        raise ValueError(f"successes ({c}) must lie between 0 and the number of trials ({n})")
    if k > n:
        raise ValueError(f"k ({k}) exceeds the number of trials ({n})")
    return math.comb(c, k) / math.comb(n, k)


@dataclass
class Summary:
    domain: str
    num_tasks: int
    num_simulations: int
    """Simulations counted (those that ended in infrastructure_error are not)."""
    avg_reward: float
    pass_hat: dict[int, float]
    termination: dict[str, int]
    unjudged_simulations: int = 0
    infra_errors: int = 0
    """Simulations left out because they never ran (``infrastructure_error``), as tau2-bench leaves them out."""
    notes: list[str] = field(default_factory=list)


def rewards_by_task(results: Results) -> dict[str, list[float]]:
    """Each task's rewards, one per trial, of the simulations that ran (infrastructure_error left out; no reward
    counts 0), in the order of the results file."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for s in results.simulations:
        if s.termination_reason != INFRA_ERROR:
            by_task[s.task_id].append(s.reward if s.reward is not None else 0.0)
    return dict(by_task)


def task_pass_hat(rewards: list[float], k_max: int | None = None) -> dict[int, float]:
    """pass^1..pass^k of one task from its trials' rewards (k up to its number of trials, or ``k_max``)."""
    n, c = len(rewards), sum(map(is_success, rewards))
    return {k: pass_hat_k(n, c, k) for k in range(1, min(n, k_max or n) + 1)}


def summarize(results: Results) -> Summary:
    """pass^1..pass^k, k the smallest number of trials any task has; the average reward; how runs ended
    (simulations that ended in infrastructure_error counted only there, as in tau2-bench)."""
    by_task = rewards_by_task(results)
    termination: dict[str, int] = defaultdict(int)
    unjudged = infra = 0
    for s in results.simulations:
        termination[s.termination_reason] += 1
        if s.termination_reason == INFRA_ERROR:
            infra += 1
        elif s.reward_info and (s.reward_info.get("info") or {}).get("unjudged"):
            unjudged += 1
    domain = str((results.info.get("environment_info") or {}).get("domain_name", "?"))
    notes = []
    if infra:
        notes.append(f"{infra} simulation(s) ended in infrastructure_error (they never ran): left out of the "
                     "figures, as tau2-bench leaves them out; `--resume` runs them again")
    if not by_task:
        return Summary(domain, 0, 0, 0.0, {}, dict(termination), infra_errors=infra, notes=notes)
    k_max = min(len(v) for v in by_task.values())
    num_trials = results.info.get("num_trials")
    if isinstance(num_trials, int) and num_trials >= 1:
        k_max = min(k_max, num_trials)
    if len({len(v) for v in by_task.values()}) > 1:
        notes.append(f"tasks have unequal numbers of trials; pass^k shown up to k={k_max}")
    per_task = [task_pass_hat(v, k_max) for v in by_task.values()]
    pass_hat = {k: sum(p[k] for p in per_task) / len(per_task) for k in range(1, k_max + 1)}
    rewards = [r for v in by_task.values() for r in v]
    if unjudged:
        notes.append(f"{unjudged} simulation(s) have NL assertions in their reward basis left unjudged "
                     "(no judge model): those assertions are left out of the reward")
    return Summary(domain, len(by_task), len(rewards), sum(rewards) / len(rewards), pass_hat, dict(termination),
                   unjudged, infra, notes)
