"""`Environment`: a domain's policy, the agent's toolkit and the user's, and the operations a simulation and its
evaluation need (answer a tool call, set the initial state, run env functions and assertions, hash the databases).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from keye_agent.errors import KeyeAgentError
from keye_agent.types import ToolCall, ToolResult

from .messages import TauMessage, TauToolCall, now_iso
from .schema import EnvAssertion, EnvFunctionCall, InitializationData
from .toolkit import Toolkit


class TauError(KeyeAgentError):
    """A simulation or evaluation could not be set up or run (bad initial state, unknown env function...)."""


def result_message(call: TauToolCall, result: ToolResult) -> TauMessage:
    """A tool result as a tau2-style tool message; failures read ``Error: <message>`` with ``error`` set."""
    content = result.content if result.ok else f"Error: {result.error}"
    return TauMessage(role="tool", id=call.id, content=content, requestor=call.requestor, error=not result.ok,
                      timestamp=now_iso())


class Environment:
    """What one simulation acts on. Build a fresh one per simulation (``Domain.make_environment``)."""

    def __init__(self, domain_name: str, policy: str, tools: Toolkit, user_tools: Toolkit | None = None) -> None:
        self.domain_name = domain_name
        self.policy = policy
        self.tools = tools
        self.user_tools = user_tools

    def toolkit(self, requestor: str) -> Toolkit:
        if requestor == "assistant":
            return self.tools
        if requestor == "user":
            if self.user_tools is None:
                raise TauError(f"domain {self.domain_name!r} has no user tools")
            return self.user_tools
        raise TauError(f"requestor must be 'assistant' or 'user', got {requestor!r}")

    async def call(self, call: TauToolCall) -> TauMessage:
        """Answer one tool call the way the live agent's calls are answered (schema check, then the tool)."""
        kit = self.toolkit(call.requestor)
        res = await kit.registry().call(ToolCall(id=call.id or "call", name=call.name, arguments=call.arguments))
        return result_message(call, res)

    async def run_function(self, fc: EnvFunctionCall) -> Any:
        """Run any public function of either toolkit (initialization actions, assertions), unvalidated, as
        tau2-bench does."""
        fn = self.toolkit(fc.env_type).function(fc.func_name)
        value = fn(**fc.arguments)
        if inspect.isawaitable(value):
            value = await value
        return value

    async def check_assertion(self, assertion: EnvAssertion) -> bool:
        value = await self.run_function(assertion)
        if not isinstance(value, bool):
            raise TauError(f"env assertion {assertion.func_name!r} returned {type(value).__name__}, not a bool")
        return value == assertion.assert_value

    async def set_state(self, initialization_data: InitializationData | None,
                        initialization_actions: list[EnvFunctionCall] | None,
                        message_history: list[TauMessage], *, strict: bool = True) -> list[str]:
        """Bring the environment to a task's starting point, or (with a whole trajectory as history) to the state
        a simulation ended in. Returns notes on replayed calls whose output differed from the recorded one (with
        ``strict`` such a difference raises instead)."""
        if initialization_data is not None:
            if initialization_data.agent_data is not None:
                self.tools.update_db(initialization_data.agent_data)
                # tau2-bench points the user toolkit at the agent's database here (its expected/ data records the
                # effect); kept so that both toolkits see what upstream's see
                if self.user_tools is not None and self.user_tools.db is not None:
                    self.user_tools.db = self.tools.db
            if initialization_data.user_data is not None:
                self.toolkit("user").update_db(initialization_data.user_data)
        for action in initialization_actions or []:
            await self.run_function(action)
        notes: list[str] = []
        for call, recorded in pair_calls(message_history):
            kit = self.toolkit(call.requestor) if call.requestor == "assistant" or self.user_tools else None
            if kit is None or not kit.has_tool(call.name) or not kit.mutates(call.name):
                continue  # unknown tools changed nothing live; reads need no replay
            got = await self.call(call)
            if _loads(got.content) != _loads(recorded.content):
                msg = (f"replayed {call.name}({json.dumps(call.arguments)}) returned {got.content!r}, "
                       f"the trajectory recorded {recorded.content!r}")
                if strict:
                    raise TauError(msg)
                notes.append(msg)
        return notes

    def db_hash(self) -> str | None:
        return self.tools.db_hash()

    def user_db_hash(self) -> str | None:
        return self.user_tools.db_hash() if self.user_tools is not None else None

    async def aclose(self) -> None:
        await self.tools.aclose()
        if self.user_tools is not None and self.user_tools is not self.tools:
            await self.user_tools.aclose()


def pair_calls(messages: list[TauMessage]) -> list[tuple[TauToolCall, TauMessage]]:
    """Each tool call of the trajectory with the tool message that answered it (they follow it, in order)."""
    pairs: list[tuple[TauToolCall, TauMessage]] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        i += 1
        if m.role == "tool":
            raise TauError(f"message {i - 1} is a tool message that follows no tool call")
        if m.role in ("assistant", "user") and m.tool_calls:
            for tc in m.tool_calls:
                if i >= len(messages) or messages[i].role != "tool":
                    raise TauError(f"tool call {tc.name!r} (id {tc.id!r}) has no tool message after it")
                tm = messages[i]
                i += 1
                if (tm.id or "") != (tc.id or ""):
                    raise TauError(f"tool message id {tm.id!r} does not match the call id {tc.id!r}")
                call = tc if tc.requestor == m.role else tc.model_copy(update={"requestor": m.role})
                pairs.append((call, tm))
    return pairs


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return text
