"""The report of a TAU results file: the summary (pass^k as :func:`keye_agent.tau.metrics.summarize` computes it),
a per-task pass^k table, the reward breakdown of every simulation, and each simulation's conversation with its
tool calls and results, failed calls highlighted."""

from __future__ import annotations

from typing import Any

from keye_agent.tau.metrics import is_success, rewards_by_task, summarize, task_pass_hat
from keye_agent.tau.results import Results, SimulationRun

from .page import as_json, badge, document, esc, kv, pre, seconds, table

_CHECKS = (("action_checks", "action"), ("communicate_checks", "communicate"), ("env_assertions", "env assertion"),
           ("nl_assertions", "NL assertion"))


def _num(x: float) -> str:
    return f"{x:.3f}"


def summary_section(results: Results) -> str:
    s = summarize(results)
    facts = {"domain": s.domain, "tasks": s.num_tasks, "simulations": s.num_simulations,
             "average reward": _num(s.avg_reward),
             **{f"pass^{k}": _num(v) for k, v in s.pass_hat.items()},
             "ended by": ", ".join(f"{k} {v}" for k, v in sorted(s.termination.items())) or "-"}
    agent = ((results.info.get("agent_info") or {}).get("llm")) or "?"
    user = ((results.info.get("user_info") or {}).get("llm")) or "?"
    notes = "".join(f'<div class="note">{esc(n)}</div>' for n in s.notes)
    return (f'<div class="card">{kv({"agent": agent, "user": user, "run at": results.timestamp})}'
            f"{kv(facts)}{notes}</div>")


def pass_table(results: Results) -> str:
    """One row per task: its trials, successes, average reward and pass^1..pass^n."""
    by_task = rewards_by_task(results)
    k_max = max((len(v) for v in by_task.values()), default=0)
    rows, classes = [], []
    for task_id, rewards in by_task.items():
        p = task_pass_hat(rewards)
        ok = sum(map(is_success, rewards))
        rows.append([esc(task_id), esc(len(rewards)), esc(ok), esc(_num(sum(rewards) / len(rewards))),
                     *[esc(_num(p[k])) if k in p else "-" for k in range(1, k_max + 1)]])
        classes.append("pass" if ok == len(rewards) else "fail" if ok == 0 else "")
    headers = ["task", "trials", "successes", "avg reward", *[f"pass^{k}" for k in range(1, k_max + 1)]]
    return table(headers, rows, num=set(range(1, len(headers))), row_class=classes)


def breakdown_table(sims: list[SimulationRun]) -> str:
    keys = sorted({k for s in sims for k in ((s.reward_info or {}).get("reward_breakdown") or {})})
    rows, classes = [], []
    for s in sims:
        bd = (s.reward_info or {}).get("reward_breakdown") or {}
        basis = (s.reward_info or {}).get("reward_basis") or []
        rows.append([f'<a href="#sim-{esc(s.id)}">{esc(s.task_id)}</a>', esc(s.trial), esc(s.termination_reason),
                     esc("-" if s.reward is None else _num(s.reward)),
                     *[esc(_num(bd[k])) if k in bd else "-" for k in keys], esc(", ".join(basis)),
                     esc(seconds(s.duration)), esc(len(s.messages))])
        classes.append("" if is_success(s.reward) else "err")
    headers = ["task", "trial", "ended by", "reward", *keys, "basis", "time", "messages"]
    return table(headers, rows, num={1, 3, *range(4, 4 + len(keys)), len(headers) - 2, len(headers) - 1},
                 row_class=classes)


def _checks(ri: dict[str, Any]) -> str:
    rows, classes = [], []
    for key, label in _CHECKS:
        for c in ri.get(key) or []:
            met = c.get("met", c.get("action_match"))
            what = c.get("info") or c.get("nl_assertion") or (c.get("action") or {}).get("name") \
                or (c.get("env_assertion") or {}).get("func_name")
            rows.append([esc(label), esc(what), badge("met" if met else "not met", "ok" if met else "err")])
            classes.append("" if met else "err")
    db = ri.get("db_check")
    if db:
        rows.append(["database", esc("the final state against the gold state"),
                     badge("matches" if db.get("db_match") else "differs", "ok" if db.get("db_match") else "err")])
        classes.append("" if db.get("db_match") else "err")
    return table(["check", "what", "outcome"], rows, row_class=classes) if rows else ""


def _messages(s: SimulationRun) -> str:
    rows, classes = [], []
    for m in s.messages:
        who = m.role if m.role != "tool" else f"tool → {m.requestor or 'assistant'}"
        for c in m.tool_calls or []:
            rows.append([esc(who), f"calls <b>{esc(c.name)}</b>{pre(as_json(c.arguments))}"])
            classes.append("")
        if m.content:
            flag = badge("error", "err") if m.error else ""
            rows.append([esc(who), flag + pre(m.content)])
            classes.append("err" if m.error else "")
    return table(["who", "message"], rows, row_class=classes)


def simulation_card(s: SimulationRun) -> str:
    ri = s.reward_info or {}
    ok = is_success(s.reward)
    usage = (s.info or {}).get("usage") or {}
    facts: dict[str, Any] = {"ended by": s.termination_reason, "reward": "-" if s.reward is None else _num(s.reward),
                             "time": seconds(s.duration), "messages": len(s.messages)}
    for side in ("agent", "user"):
        u = usage.get(side)
        if u:
            facts[f"{side} tokens"] = f"{u.get('prompt_tokens', 0)} in / {u.get('completion_tokens', 0)} out"
    notes = [str(n) for n in (s.info or {}).get("notes") or []]
    note = (ri.get("info") or {}).get("note")
    if note:
        notes.append(str(note))
    head = (f'<h3 id="sim-{esc(s.id)}">{esc(s.task_id)} · trial {esc(s.trial)}'
            f'{badge("pass" if ok else "fail", "ok" if ok else "err")}</h3>')
    body = [head, kv(facts), *[f'<div class="note">{esc(n)}</div>' for n in notes], _checks(ri),
            f"<details><summary>conversation ({len(s.messages)} messages)</summary>{_messages(s)}</details>"]
    return f'<div class="card item {"" if ok else "err"}">{"".join(body)}</div>'


def render_results(results: Results, *, source: str = "") -> str:
    sims = results.simulations
    body = ["<h1>TAU results</h1>", f'<div class="muted">{esc(source)}</div>', summary_section(results),
            "<h2>pass^k per task</h2>", pass_table(results),
            "<h2>Reward breakdown</h2>", breakdown_table(sims),
            '<div class="toolbar"><button id="errors-only">show only failed simulations</button>'
            '<button id="expand-all">expand all</button></div>',
            "<h2>Simulations</h2>", *[simulation_card(s) for s in sims]]
    domain = str((results.info.get("environment_info") or {}).get("domain_name", ""))
    return document(f"keye-agent TAU results {domain}".strip(), "\n".join(body))
