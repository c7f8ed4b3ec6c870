"""pass^k and the run summary.

pass^k (from the tau-bench paper): the chance that k trials of a task, drawn from its n trials, all succeed,
averaged over tasks: ``mean_t C(c_t, k) / C(n_t, k)``, where c_t of the n_t trials of task t scored 1.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from .results import Results


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
    avg_reward: float
    pass_hat: dict[int, float]
    termination: dict[str, int]
    unjudged_simulations: int = 0
    notes: list[str] = field(default_factory=list)


def summarize(results: Results) -> Summary:
    """pass^1..pass^k, k the smallest number of trials any task has; the average reward; how runs ended."""
    by_task: dict[str, list[float]] = defaultdict(list)
    termination: dict[str, int] = defaultdict(int)
    unjudged = 0
    for s in results.simulations:
        r = s.reward if s.reward is not None else 0.0
        by_task[s.task_id].append(r)
        termination[s.termination_reason] += 1
        if s.reward_info and (s.reward_info.get("info") or {}).get("unjudged"):
            unjudged += 1
    domain = str((results.info.get("environment_info") or {}).get("domain_name", "?"))
    notes = []
    if not by_task:
        return Summary(domain, 0, 0, 0.0, {}, dict(termination))
    k_max = min(len(v) for v in by_task.values())
    if len({len(v) for v in by_task.values()}) > 1:
        notes.append(f"tasks have unequal numbers of trials; pass^k shown up to k={k_max}")
    pass_hat = {k: sum(pass_hat_k(len(v), sum(map(is_success, v)), k) for v in by_task.values()) / len(by_task)
                for k in range(1, k_max + 1)}
    rewards = [r for v in by_task.values() for r in v]
    if unjudged:
        notes.append(f"{unjudged} simulation(s) have NL assertions in their reward basis left unjudged "
                     "(no judge model): those assertions are left out of the reward")
    return Summary(domain, len(by_task), len(rewards), sum(rewards) / len(rewards), pass_hat, dict(termination),
                   unjudged, notes)
