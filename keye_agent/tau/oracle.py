"""Scripted participants that check a domain rather than a model: they are backends, so they run through the real
orchestrator, agent loop and tools exactly as a model does.

- :class:`OracleAgent` makes the task's gold assistant actions, one call per step, then tells the user every
  ``communicate_info`` string. A domain whose tasks the oracle cannot solve has broken tasks or tools.
- :class:`OracleUser` makes the gold user-side actions, states its request, and stops after the agent's reply.
- :class:`IdleAgent` does nothing but apologise: every task whose reward needs a change should score 0 with it.

Names say "oracle"/"idle", so no result produced with them passes for a model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keye_agent.backends.base import BaseBackend
from keye_agent.types import AssistantTurn, GenerationSettings, Message, ToolCall, Usage

from .messages import STOP
from .schema import Task


class OracleAgent(BaseBackend):
    def __init__(self, task: Task) -> None:
        self.name = "oracle-agent"
        self.context_window = 1_000_000
        self._actions = [a for a in task.gold_actions if a.requestor == "assistant"]
        ec = task.evaluation_criteria
        self._infos = list(ec.communicate_info or []) if ec else []
        self._next = 0
        self._said = False

    async def agenerate(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
                        settings: GenerationSettings) -> AssistantTurn:
        if self._next < len(self._actions):
            a = self._actions[self._next]
            self._next += 1
            call = ToolCall(id=f"oracle_{self._next}", name=a.name, arguments=dict(a.arguments))
            return AssistantTurn(tool_calls=[call], finish_reason="tool_calls", usage=Usage(completion_tokens=1))
        if not self._said:
            self._said = True
            text = "Done. " + " ".join(self._infos) if self._infos else "Done: your request is complete."
        else:
            text = "Is there anything else I can help you with?"
        return AssistantTurn(text=text, usage=Usage(completion_tokens=1))


class OracleUser(BaseBackend):
    def __init__(self, task: Task) -> None:
        self.name = "oracle-user"
        self.context_window = 1_000_000
        self._actions = [a for a in task.gold_actions if a.requestor == "user"]
        self._request = str(task.user_scenario.instructions)
        self._next = 0
        self._spoke = False

    async def agenerate(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
                        settings: GenerationSettings) -> AssistantTurn:
        if self._next < len(self._actions):
            a = self._actions[self._next]
            self._next += 1
            call = ToolCall(id=f"oracle_user_{self._next}", name=a.name, arguments=dict(a.arguments))
            return AssistantTurn(tool_calls=[call], finish_reason="tool_calls")
        if not self._spoke:
            self._spoke = True
            return AssistantTurn(text=self._request)
        return AssistantTurn(text=STOP)


class IdleAgent(BaseBackend):
    def __init__(self, task: Task | None = None) -> None:
        self.name = "idle-agent"
        self.context_window = 1_000_000

    async def agenerate(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
                        settings: GenerationSettings) -> AssistantTurn:
        return AssistantTurn(text="I am sorry, I cannot help with that.")
