"""The agent side of a simulation: our :class:`~keye_agent.agent.Agent`, with the domain's tools and policy, run
for one reply at a time. Each of its steps becomes trajectory messages (its tool calls and their results, then its
text to the user), streamed so the orchestrator can stop it at a step or error limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from keye_agent.agent import Agent, FinalAnswer, RunFinished, StepFinished
from keye_agent.types import (
    BudgetSpent,
    GenerationSettings,
    ModelBackend,
    RepeatedCall,
    RunResult,
    RunStatus,
    StepRecord,
)

from .environment import Environment, TauError, result_message
from .messages import STOP, TauMessage, TauToolCall, agent_view, now_iso

AGENT_INSTRUCTIONS = """\
You are a customer-service agent. Help the user while following the policy below to the letter.
Each reply either calls tools or writes to the user. Use the tools to look things up and to act; never invent
a result. Confirm what you did, with the figures and ids the tools returned. When the policy or the tools cannot
solve the user's problem, transfer the user to a human agent if a tool for that exists.

<policy>
{policy}
</policy>"""

# how an agent run that did not end with a reply ends the simulation
END_REASONS: dict[RunStatus, str] = {
    "max_steps": "max_steps",
    "max_tokens": "context_window_exceeded",
    "timeout": "timeout",
    "max_errors": "too_many_errors",
    "cancelled": "agent_error",
    "model_error": "agent_error",
}


@dataclass
class AgentReply:
    """Messages produced so far by the current reply, and how the reply ended."""

    final: TauMessage | None = None
    end_reason: str | None = None
    error: str | None = None
    failed_calls: int = 0
    blocked: list[str] = field(default_factory=list)
    """Exact repeats of failed calls that the agent loop refused to run."""
    unreported_usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    """Tokens of model steps that left no message in the trajectory (rejected or malformed output)."""


class AgentSide:
    """Wraps an :class:`Agent` whose tools act on ``env``'s agent toolkit."""

    def __init__(self, model: ModelBackend, env: Environment, *, settings: GenerationSettings | None = None,
                 max_steps_per_reply: int = 30, max_consecutive_errors: int = 5, tracer: Any = None) -> None:
        self.agent = Agent(model, tools=env.tools.registry(), instructions=AGENT_INSTRUCTIONS.format(policy=env.policy),
                           max_steps=max_steps_per_reply, max_consecutive_errors=max_consecutive_errors,
                           final_answer_tool=False, settings=settings or GenerationSettings(temperature=0.0),
                           stream_deltas=False, tracer=tracer)

    async def respond(self, trajectory: list[TauMessage], reply: AgentReply,
                      max_steps: int | None = None) -> AsyncIterator[TauMessage]:
        """Yield the messages of the agent's next reply, tool traffic first; ``reply`` says how it ended."""
        view = agent_view(trajectory)
        if not view or view[-1].role != "user":
            raise TauError("the agent's turn must follow a user message")
        limits = {} if max_steps is None else {"max_steps": max(1, max_steps)}
        stream = self.agent.astream(view[-1], history=view[:-1], **limits)
        last: StepRecord | None = None
        reported = {"prompt_tokens": 0, "completion_tokens": 0}

        def report(usage: dict[str, int]) -> dict[str, int]:
            for k in reported:
                reported[k] += usage[k]
            return usage

        try:
            async for ev in stream:
                if isinstance(ev, StepFinished) and ev.record.kind == "model" and ev.record.turn is not None:
                    rec = last = ev.record
                    turn = rec.turn
                    assert turn is not None
                    if not turn.tool_calls:
                        continue
                    # exact repeats of failed calls, refused by the loop without running: they never reached the
                    # environment, so they stay out of the trajectory (a replay would run them)
                    refused = {f.call_id for f in rec.errors if isinstance(f, RepeatedCall)}
                    ran = []
                    for c, res in zip(turn.tool_calls, rec.tool_results, strict=True):
                        if c.id in refused:
                            reply.blocked.append(f"{c.name}({c.arguments})")
                        else:
                            ran.append((TauToolCall(id=c.id, name=c.name, arguments=c.arguments), res))
                    if not ran:
                        continue
                    yield TauMessage(role="assistant", content=turn.text or None, tool_calls=[c for c, _ in ran],
                                     usage=report(_usage(rec)), timestamp=now_iso(),
                                     generation_time_seconds=rec.model_duration_s)
                    for call, res in ran:
                        reply.failed_calls += 0 if res.ok else 1
                        yield result_message(call, res)
                elif isinstance(ev, FinalAnswer) and last is not None:
                    # the agent's text to the user: a model step's plain answer that the loop accepted as final
                    reply.final = TauMessage(role="assistant", content=ev.text, usage=report(_usage(last)),
                                             timestamp=now_iso(),
                                             generation_time_seconds=last.model_duration_s)
                    yield reply.final
                elif isinstance(ev, RunFinished):
                    u = ev.result.usage
                    reply.unreported_usage = {"prompt_tokens": max(0, u.prompt_tokens - reported["prompt_tokens"]),
                                              "completion_tokens": max(0, u.completion_tokens
                                                                       - reported["completion_tokens"])}
                    if ev.result.status != "completed":
                        reply.end_reason = END_REASONS.get(ev.result.status, "agent_error")
                        reply.error = _why(ev.result)
        finally:
            await stream.aclose()


def _why(result: RunResult) -> str | None:
    """How the agent's run ended, with the last fault the model was told about (what went wrong, not only that
    something did)."""
    faults = [f for s in result.trajectory.steps for f in s.errors if not isinstance(f, BudgetSpent)]
    if not faults:
        return result.error
    last = " ".join(str(getattr(faults[-1], "message", faults[-1])).split())
    return f"{result.error}; the last fault: {last[:300]}"


def _usage(rec: StepRecord) -> dict[str, int]:
    return {"prompt_tokens": rec.usage.prompt_tokens, "completion_tokens": rec.usage.completion_tokens}


def is_agent_stop(message: TauMessage) -> bool:
    return message.role == "assistant" and not message.is_tool_call and STOP in (message.content or "")
