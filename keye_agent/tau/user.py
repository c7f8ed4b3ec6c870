"""The user simulator: a model playing the customer, given the task's scenario and our simulation guidelines.

It sees the conversation with roles swapped (the agent's messages arrive as "user" turns), answers with one
message at a time, may call the user-side tools of the domain, and ends the conversation with ``###STOP###``
(goal reached), ``###TRANSFER###`` (handed to a human) or ``###OUT-OF-SCOPE###`` (the scenario does not say what
to do next).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from keye_agent.types import GenerationSettings, Message, ModelBackend

from .messages import USER_STOP_TOKENS, TauMessage, TauToolCall, now_iso, user_view

GUIDELINES = """\
# How to play the customer

You are a customer talking to a customer-service agent. Play the customer described in the scenario below, in a
realistic and natural way.

- Write one message at a time, as the customer would.
- Follow the scenario. Do not invent facts it does not give you: what it does not say, you do not know.
- Give information when the agent asks for it, a little at a time; do not recite the scenario word for word.
- When the goal of the scenario is reached, reply with ###STOP### alone to end the conversation.
- When the agent hands you over to a human or another agent, reply with ###TRANSFER###.
- When the scenario does not tell you how to go on, reply with ###OUT-OF-SCOPE###.
"""

TOOL_GUIDELINES = """\
- You also have tools for actions on your side (your own device or account). Use one only when the agent asks you
  to, or when you need it to answer the agent. In one turn either call a tool or write to the agent, not both.
  The agent does not see your tool calls, only your messages; report what a tool showed you truthfully.
"""


def system_prompt(scenario: str, *, guidelines: str | None = None, has_tools: bool = False) -> str:
    text = guidelines if guidelines is not None else GUIDELINES + (TOOL_GUIDELINES if has_tools else "")
    return f"{text.strip()}\n\n<scenario>\n{scenario}\n</scenario>"


def is_user_stop(message: TauMessage) -> bool:
    return not message.is_tool_call and any(tok in (message.content or "") for tok in USER_STOP_TOKENS)


class UserSimulator:
    """Generates the user's next message from the trajectory so far."""

    def __init__(self, model: ModelBackend, scenario: str, *, tools: Any | None = None,
                 guidelines: str | None = None, settings: GenerationSettings | None = None) -> None:
        self.model = model
        self.tools = tools
        """A ToolRegistry of the user-side tools (schemas only are used here; the orchestrator runs the calls)."""
        self.system = system_prompt(scenario, guidelines=guidelines, has_tools=tools is not None and len(tools) > 0)
        self.settings = settings or GenerationSettings(temperature=0.0)
        self._n_calls = 0

    async def respond(self, trajectory: Sequence[TauMessage]) -> TauMessage:
        messages: list[Message] = [Message.system(self.system), *user_view(list(trajectory))]
        if len(messages) == 1:
            # the conversation opens with the user: give the model a turn to answer
            messages.append(Message.user("(The agent is waiting for your first message.)"))
        elif messages[-1].role == "assistant":
            messages.append(Message.user("(The agent is waiting for your reply.)"))
        schemas = self.tools.schemas() if self.tools is not None and len(self.tools) else None
        t0 = time.perf_counter()
        turn = await self.model.agenerate(messages, schemas, self.settings)
        elapsed = time.perf_counter() - t0
        usage = {"prompt_tokens": turn.usage.prompt_tokens, "completion_tokens": turn.usage.completion_tokens}
        if turn.tool_calls:
            calls = []
            for c in turn.tool_calls:
                self._n_calls += 1
                calls.append(TauToolCall(id=c.id or f"user_call_{self._n_calls}", name=c.name,
                                         arguments=c.arguments, requestor="user"))
            return TauMessage(role="user", content=turn.text or None, tool_calls=calls, usage=usage,
                              timestamp=now_iso(), generation_time_seconds=elapsed)
        return TauMessage(role="user", content=turn.text, usage=usage, generation_time_seconds=elapsed,
                          timestamp=now_iso())
