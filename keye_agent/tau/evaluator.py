"""Scoring a simulation as tau2-bench defines it.

- DB: rebuild the final state by replaying the trajectory's state-changing calls on a fresh environment, replay the
  gold actions on another fresh one, and compare both databases' hashes (agent side and user side).
- ENV_ASSERTION: the task's assertions run on the replayed environment.
- ACTION: every gold action is matched (on its ``compare_args``) by some call of the trajectory.
- COMMUNICATE: every ``communicate_info`` string appears in an agent message (case-insensitive, commas ignored).
- NL_ASSERTION: judged by a model when one is configured; without one they are reported unjudged and left out
  of the product (the run summary says so).

The reward is the product over the task's ``reward_basis`` (default [DB, COMMUNICATE]). A simulation that ended
other than by the user or the agent stopping scores 0.

One known difference from upstream: our tools check arguments against their JSON schema, live and in the replay
alike, so a call refused for bad arguments changes nothing either time; upstream calls tool functions unchecked,
so for such a call (say ``status="done"``) its replay may change the database where ours does not.
"""

from __future__ import annotations

from typing import Any

from keye_agent.types import ModelBackend

from .domain import Domain
from .messages import TauMessage
from .schema import RewardType, Task

_FINISHED = ("user_stop", "agent_stop")


async def evaluate(messages: list[TauMessage], termination_reason: str, task: Task, domain: Domain, *,
                   judge: ModelBackend | None = None) -> dict[str, Any]:
    """The ``reward_info`` of a simulation, in tau2-bench's RewardInfo shape."""
    if termination_reason not in _FINISHED:
        return {"reward": 0.0, "reward_basis": None,
                "info": {"note": f"Simulation terminated prematurely. Termination reason: {termination_reason}"}}
    ec = task.evaluation_criteria
    if ec is None:
        return {"reward": 1.0, "reward_basis": None, "info": {"note": "No evaluation criteria"}}
    basis = [RewardType(b) for b in ec.reward_basis]
    env_part = await _env_checks(messages, task, domain)
    action_checks = await _action_checks(messages, task, domain)
    communicate = _communicate_checks(messages, ec.communicate_info or [])
    nl_checks, nl_note = None, None
    if ec.nl_assertions:
        if judge is not None:
            from .judge import judge_nl_assertions

            nl_checks = await judge_nl_assertions(judge, messages, ec.nl_assertions)
        else:
            nl_note = f"{len(ec.nl_assertions)} NL assertion(s) unjudged: no judge model configured"

    parts: dict[str, float] = {}
    # with neither gold actions nor env assertions there is nothing to compare: upstream scores the environment
    # 1.0 and leaves DB and ENV_ASSERTION out of the breakdown; so do we
    env_checked = env_part["env_assertions"] is not None
    if RewardType.DB in basis and env_checked:
        parts["DB"] = env_part["db_check"]["db_reward"]
    if RewardType.ENV_ASSERTION in basis and env_checked:
        parts["ENV_ASSERTION"] = float(all(c["met"] for c in env_part["env_assertions"]))
    if RewardType.ACTION in basis:
        parts["ACTION"] = float(all(c["action_match"] for c in action_checks or []))
    if RewardType.COMMUNICATE in basis:
        parts["COMMUNICATE"] = float(all(c["met"] for c in communicate or []))
    unjudged = False
    if RewardType.NL_ASSERTION in basis:
        if nl_checks is not None:
            parts["NL_ASSERTION"] = float(all(c["met"] for c in nl_checks))
        elif ec.nl_assertions:
            unjudged = True  # left out of the product, and said so
        else:
            parts["NL_ASSERTION"] = 1.0
    reward = 1.0
    for v in parts.values():
        reward *= v
    info: dict[str, Any] = {"env": env_part.get("info"), "nl": {"note": nl_note} if nl_note else None,
                            "communicate": None, "action": None}
    if unjudged:
        info["unjudged"] = ["NL_ASSERTION"]
    return {
        "reward": reward,
        "db_check": env_part["db_check"],
        "env_assertions": env_part["env_assertions"],
        "action_checks": action_checks,
        "nl_assertions": nl_checks,
        "communicate_checks": communicate,
        "reward_basis": [b.value for b in basis],
        "reward_breakdown": parts,
        "info": info,
    }


async def gold_environment(task: Task, domain: Domain) -> tuple[Any, list[dict[str, Any]]]:
    """A fresh environment at the task's start with its gold actions applied, and for each action whether the
    tool accepted it (gold actions that raise are noted and skipped, as upstream's evaluator does)."""
    env = await domain.make_environment()
    init = task.initial_state
    await env.set_state(init.initialization_data if init else None, init.initialization_actions if init else None,
                        list((init.message_history if init else None) or []))
    outcomes = []
    for action in task.gold_actions:
        kit = env.toolkit(action.requestor)
        try:
            await kit.invoke(action.name, dict(action.arguments))
            outcomes.append({"name": action.name, "ok": True})
        except Exception as e:  # noqa: BLE001 - a failing gold action is data about the task, recorded
            outcomes.append({"name": action.name, "ok": False, "error": str(e)})
    return env, outcomes


async def _env_checks(messages: list[TauMessage], task: Task, domain: Domain) -> dict[str, Any]:
    ec = task.evaluation_criteria
    assert ec is not None
    if ec.actions is None and ec.env_assertions is None:
        return {"db_check": {"db_match": True, "db_reward": 1.0}, "env_assertions": None,
                "info": {"note": "No expected actions or env assertions"}}
    predicted = await domain.make_environment()
    gold = None
    try:
        init = task.initial_state
        notes = await predicted.set_state(init.initialization_data if init else None,
                                          init.initialization_actions if init else None, messages, strict=False)
        gold, outcomes = await gold_environment(task, domain)
        match = predicted.db_hash() == gold.db_hash() and predicted.user_db_hash() == gold.user_db_hash()
        checks = []
        for a in ec.env_assertions or []:
            try:
                met = await predicted.check_assertion(a)
            except Exception as e:  # noqa: BLE001 - an assertion that cannot run is an unmet one, with its reason
                met = False
                notes.append(f"env assertion {a.func_name} failed to run: {e}")
            checks.append({"env_assertion": a.model_dump(mode="json"), "met": met, "reward": 1.0 if met else 0.0})
        info: dict[str, Any] = {"gold_actions": outcomes}
        if notes:
            info["replay_notes"] = notes
        return {"db_check": {"db_match": match, "db_reward": 1.0 if match else 0.0}, "env_assertions": checks,
                "info": info}
    finally:
        await predicted.aclose()
        if gold is not None:
            await gold.aclose()


async def _action_checks(messages: list[TauMessage], task: Task, domain: Domain) -> list[dict[str, Any]] | None:
    if not task.gold_actions:
        return None  # as upstream: nothing to check, and no list
    calls = [c.model_copy(update={"requestor": m.role}) for m in messages
             if m.role in ("assistant", "user") for c in m.tool_calls or []]
    kinds = await _tool_kinds(domain)
    out = []
    for action in task.gold_actions:
        met = any(action.matches(c) for c in calls)
        out.append({"action": action.model_dump(mode="json"), "action_match": met, "action_reward": float(met),
                    "tool_type": kinds.get(action.name)})
    return out


async def _tool_kinds(domain: Domain) -> dict[str, str]:
    """read / write / generic per tool name, from one environment of the domain (kept on the domain)."""
    if domain.tool_kinds is None:
        kinds: dict[str, str] = {}
        env = await domain.make_environment()
        try:
            for kit in (env.tools, env.user_tools):
                if kit is not None:
                    kinds.update({n: kit.tool_kind(n) for n in kit.tool_names()})
        finally:
            await env.aclose()
        domain.tool_kinds = kinds
    return domain.tool_kinds


def _communicate_checks(messages: list[TauMessage], infos: list[str]) -> list[dict[str, Any]] | None:
    if not infos:
        return None
    out = []
    for info in infos:
        hit = next((m for m in messages if m.role == "assistant" and m.has_text
                    and info.lower() in (m.content or "").lower().replace(",", "")), None)
        out.append({"info": info, "met": hit is not None,
                    "justification": f"Information {info!r} communicated in the message: {hit.content!r}" if hit
                    else f"Information {info!r} not communicated."})
    return out
