"""One simulation: the agent and the user simulator take turns; their tool calls act on the environment.

The trajectory starts from the task's initial state (its message history, else the agent's greeting) and ends
when the user or the agent says a stop token, or on a limit: ``max_steps`` messages exchanged, ``max_errors``
failed tool calls, a wall-clock ``timeout_s``, or a participant that fails.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keye_agent.errors import ModelError
from keye_agent.types import GenerationSettings, ModelBackend

from .agent_side import AgentReply, AgentSide, is_agent_stop
from .domain import Domain
from .environment import Environment, TauError
from .messages import TauMessage, now_iso
from .results import SimulationRun
from .schema import Task
from .user import UserSimulator, is_user_stop

GREETING = "Hi! How can I help you today?"


@dataclass
class Limits:
    max_steps: int = 200
    """Messages exchanged (agent messages, user messages, batches of tool results), tau2-bench's count."""
    max_errors: int = 10
    """Failed tool calls in the whole simulation."""
    timeout_s: float | None = None
    max_steps_per_reply: int = 30
    """Agent steps (model calls) in one reply to the user."""


@dataclass
class _State:
    trajectory: list[TauMessage]
    steps: int = 0
    errors: int = 0
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    agent_usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    """Agent tokens that no trajectory message carries (steps whose output was rejected)."""

    def limit_hit(self, limits: Limits) -> bool:
        if self.reason is None and self.steps >= limits.max_steps:
            self.reason = "max_steps"
            self.notes.append(f"{self.steps} messages exchanged (limit {limits.max_steps})")
        if self.reason is None and self.errors >= limits.max_errors:
            self.reason = "too_many_errors"
            failed = [m for m in self.trajectory if m.role == "tool" and m.error]
            last = f"; the last: {' '.join((failed[-1].content or '').split())[:300]}" if failed else ""
            self.notes.append(f"{self.errors} failed tool calls (limit {limits.max_errors}){last}")
        return self.reason is not None


async def run_simulation(task: Task, domain: Domain, agent_model: ModelBackend, user_model: ModelBackend, *,
                         trial: int = 0, seed: int | None = None, limits: Limits | None = None,
                         agent_settings: GenerationSettings | None = None,
                         user_settings: GenerationSettings | None = None,
                         user_guidelines: str | None = None,
                         on_finish: Callable[[Environment], Awaitable[None]] | None = None,
                         agent_tracer: Any = None) -> SimulationRun:
    """Run one simulation of ``task`` and return its record (not yet evaluated). ``on_finish`` sees the live
    environment in its final state, before it is closed (tests compare it with upstream's). ``agent_tracer``: an
    OpenTelemetry tracer (provider) for the agent's runs."""
    limits = limits or Limits()
    start_iso, t0 = now_iso(), time.perf_counter()
    env = await domain.make_environment()
    try:
        # history messages get this run's time, as upstream stamps them when a simulation starts
        history = [m.model_copy(update={"turn_idx": None, "timestamp": m.timestamp or now_iso()}) for m in
                   copy.deepcopy((task.initial_state.message_history if task.initial_state else None) or [])]
        nxt = _next_role(history)
        if nxt == "env" or (nxt == "agent" and history[-1].role == "tool"):
            # the agent loop starts each reply from a user message, and upstream cannot replay unanswered calls
            raise TauError(f"task {task.id!r}: its message history must not end with the agent's tool calls or "
                           "their results", hint="end it with a user or agent text message")
        init = task.initial_state
        await env.set_state(init.initialization_data if init else None,
                            init.initialization_actions if init else None, history)
        state = _State(trajectory=list(history))
        a_settings = _seeded(agent_settings, seed)
        u_settings = _seeded(user_settings, seed)
        agent = AgentSide(agent_model, env, settings=a_settings, max_steps_per_reply=limits.max_steps_per_reply,
                          tracer=agent_tracer)
        user_tools = None
        if env.user_tools is not None and task.user_tools != []:
            user_tools = env.user_tools.registry(include=task.user_tools)
        if user_guidelines is None and domain.user_guidelines:
            user_guidelines = domain.user_guidelines.get("tools" if user_tools is not None and len(user_tools)
                                                         else "plain")
        user = UserSimulator(user_model, str(task.user_scenario), tools=user_tools, guidelines=user_guidelines,
                             settings=u_settings)
        try:
            if limits.timeout_s is not None:
                async with asyncio.timeout(limits.timeout_s):
                    await _converse(state, env, agent, user, limits)
            else:
                await _converse(state, env, agent, user, limits)
        except TimeoutError:
            state.reason = "timeout"
            state.notes.append(f"the simulation ran past its {limits.timeout_s:g} s timeout")
        if on_finish is not None:
            await on_finish(env)
    finally:
        await env.aclose()
    for i, m in enumerate(state.trajectory):
        m.turn_idx = i
    return SimulationRun(
        task_id=task.id, start_time=start_iso, end_time=now_iso(), duration=time.perf_counter() - t0,
        termination_reason=state.reason or "unexpected_error", messages=state.trajectory, trial=trial, seed=seed,
        timestamp=datetime.now().isoformat(),
        info={"steps": state.steps, "tool_errors": state.errors, "notes": state.notes,
              "agent_model": getattr(agent_model, "name", ""), "user_model": getattr(user_model, "name", ""),
              "usage": _usage_totals(state.trajectory, state.agent_usage)},
    )


def _seeded(settings: GenerationSettings | None, seed: int | None) -> GenerationSettings:
    s = copy.copy(settings) if settings is not None else GenerationSettings(temperature=0.0)
    if seed is not None:
        s.seed = seed
    return s


def _next_role(trajectory: list[TauMessage]) -> str:
    """Who speaks after the task's message history: "user", "agent" or "env" (pending calls)."""
    if not trajectory:
        return "greet"
    last = trajectory[-1]
    if last.role == "tool":
        return "agent" if (last.requestor or "assistant") == "assistant" else "user"
    if last.is_tool_call:
        return "env"
    return "user" if last.role == "assistant" else "agent"


async def _converse(state: _State, env: Environment, agent: AgentSide, user: UserSimulator, limits: Limits) -> None:
    traj = state.trajectory
    nxt = _next_role(traj)
    if nxt == "greet":
        traj.append(TauMessage(role="assistant", content=GREETING, cost=0.0, timestamp=now_iso()))
        nxt = "user"
    elif traj and is_user_stop(traj[-1]):
        state.reason = "user_stop"
        return
    elif traj and is_agent_stop(traj[-1]):
        state.reason = "agent_stop"
        return
    while True:
        if nxt == "env":
            await _run_calls(state, env, traj[-1])
            nxt = "agent" if traj[-1].requestor == "assistant" else "user"
        elif nxt == "user":
            try:
                msg = await user.respond(traj)
            except ModelError as e:
                state.reason = "user_error"
                state.notes.append(f"user simulator failed: {e}")
                return
            if not msg.is_tool_call and not msg.has_text:
                state.reason = "user_error"
                state.notes.append("the user simulator produced an empty message")
                return
            traj.append(msg)
            state.steps += 1
            if msg.is_tool_call:
                nxt = "env"
                continue  # tool calls are answered before any limit is checked, as upstream does
            if is_user_stop(msg):
                state.reason = "user_stop"
                return
            nxt = "agent"
        else:
            reply = AgentReply()
            budget = max(1, (limits.max_steps - state.steps + 1) // 2)
            gen = agent.respond(traj, reply, max_steps=min(limits.max_steps_per_reply, budget))
            try:
                async for msg in gen:
                    traj.append(msg)
                    if msg.role == "tool":
                        state.errors += 1 if msg.error else 0
                        if not _batch_done(traj):
                            continue  # one batch of results is one step, and calls are answered before limits
                        state.steps += 1
                        if state.limit_hit(limits):
                            return
                    else:
                        state.steps += 1
            finally:
                await gen.aclose()
                for k, v in reply.unreported_usage.items():
                    state.agent_usage[k] += v
            if reply.blocked:
                state.errors += len(reply.blocked)  # the model saw them fail, as upstream would count them
                state.notes.append(f"agent repeated failed calls, refused without running: {reply.blocked}")
            if reply.final is None:
                state.reason = reply.end_reason or "agent_error"
                if reply.error:
                    state.notes.append(f"agent: {reply.error}")
                return
            if is_agent_stop(reply.final):
                state.reason = "agent_stop"
                return
            nxt = "user"
        if state.limit_hit(limits):
            return


def _batch_done(traj: list[TauMessage]) -> bool:
    """True when the last tool message answers the last call of its assistant message."""
    n = 0
    for m in reversed(traj):
        if m.role == "tool":
            n += 1
        else:
            return m.tool_calls is not None and len(m.tool_calls) == n
    return False


async def _run_calls(state: _State, env: Environment, msg: TauMessage) -> None:
    for call in msg.tool_calls or []:
        requestor = "user" if msg.role == "user" else "assistant"
        result = await env.call(call.model_copy(update={"requestor": requestor}))
        state.errors += 1 if result.error else 0
        state.trajectory.append(result)
    state.steps += 1


def _usage_totals(trajectory: list[TauMessage], agent_extra: dict[str, int]) -> dict[str, Any]:
    """Tokens per side: those on the trajectory's messages, plus the agent's steps that left no message."""
    totals = {"agent": {"prompt_tokens": 0, "completion_tokens": 0, "generation_time_seconds": 0.0},
              "user": {"prompt_tokens": 0, "completion_tokens": 0, "generation_time_seconds": 0.0}}
    for m in trajectory:
        side = {"assistant": "agent", "user": "user"}.get(m.role)
        if side is None:
            continue
        if m.usage:
            totals[side]["prompt_tokens"] += int(m.usage.get("prompt_tokens", 0) or 0)
            totals[side]["completion_tokens"] += int(m.usage.get("completion_tokens", 0) or 0)
        totals[side]["generation_time_seconds"] += m.generation_time_seconds or 0.0
    for k, v in agent_extra.items():
        totals["agent"][k] += v
    return totals
