"""Messages of a simulation in tau2-bench's shape, and the two views of them the participants get.

The trajectory of a simulation is one list of :class:`TauMessage`: assistant and user messages (text or tool
calls), and tool messages answering the calls (``id`` is the call's id, ``requestor`` says whose call it was).
The agent sees the user's text and its own calls; the user simulator sees the agent's text and its own calls, with
roles swapped, since it is a model playing the user.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keye_agent.types import Message, ToolCall

STOP = "###STOP###"
TRANSFER = "###TRANSFER###"
OUT_OF_SCOPE = "###OUT-OF-SCOPE###"
USER_STOP_TOKENS = (STOP, TRANSFER, OUT_OF_SCOPE)


def now_iso() -> str:
    return datetime.now().isoformat()


class TauToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = ""
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    requestor: Literal["user", "assistant"] = "assistant"


class TauMessage(BaseModel):
    """One message of a trajectory (system, user, assistant or tool), with tau2-bench's field names."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[TauToolCall] | None = None
    id: str | None = None
    """For tool messages: the id of the call answered."""
    requestor: Literal["user", "assistant"] | None = None
    error: bool | None = None
    turn_idx: int | None = None
    timestamp: str | None = None
    """When the message was produced (set by whoever produces it; task histories may have none)."""
    cost: float | None = None
    usage: dict[str, Any] | None = None
    raw_data: dict[str, Any] | None = None
    generation_time_seconds: float | None = None

    @property
    def is_tool_call(self) -> bool:
        return bool(self.tool_calls)

    @property
    def has_text(self) -> bool:
        return bool(self.content and self.content.strip())

    def to_tau2(self) -> dict[str, Any]:
        """The JSON object tau2-bench's pydantic models read back."""
        if self.role == "tool":
            d: dict[str, Any] = {"id": self.id or "", "role": "tool", "content": self.content,
                                 "requestor": self.requestor or "assistant", "error": bool(self.error),
                                 "turn_idx": self.turn_idx, "timestamp": self.timestamp}
        elif self.role == "system":
            d = {"role": "system", "content": self.content, "turn_idx": self.turn_idx, "timestamp": self.timestamp}
        else:
            d = {"role": self.role, "content": self.content,
                 "tool_calls": [tc.model_dump() for tc in self.tool_calls] if self.tool_calls else None,
                 "turn_idx": self.turn_idx, "timestamp": self.timestamp, "cost": self.cost, "usage": self.usage,
                 "raw_data": self.raw_data, "generation_time_seconds": self.generation_time_seconds}
        extra = {k: v for k, v in (self.model_extra or {}).items() if k not in d}
        return {**d, **extra}


def tool_output_text(value: Any) -> str:
    """A tool's return value as tau2-bench writes it into a tool message: strings as they are, everything else as
    JSON (pydantic models dumped, numbers and booleans as strings)."""
    if isinstance(value, str):
        return value

    def conv(v: Any) -> Any:
        if isinstance(v, BaseModel):
            return v.model_dump()
        if isinstance(v, bool | int | float):
            return str(v)
        if isinstance(v, list | tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return json.dumps(conv(value), default=str)


def agent_view(trajectory: list[TauMessage]) -> list[Message]:
    """The conversation as the agent model sees it: user text, its own text and calls, and their results."""
    out: list[Message] = []
    for m in trajectory:
        if m.role == "user" and not m.is_tool_call and m.has_text:
            out.append(Message.user(m.content or ""))
        elif m.role == "assistant":
            calls = [ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in m.tool_calls or []]
            if calls or m.has_text:
                out.append(Message.assistant(m.content if m.has_text else None, calls or None))
        elif m.role == "tool" and (m.requestor or "assistant") == "assistant":
            out.append(Message.tool(m.id or "", _call_name(trajectory, m.id), m.content or ""))
    return out


def user_view(trajectory: list[TauMessage]) -> list[Message]:
    """The conversation as the user simulator sees it: roles swapped (the agent's text arrives as "user"), the
    agent's tool traffic hidden, the user's own tool calls and results kept."""
    out: list[Message] = []
    for m in trajectory:
        if m.role == "assistant" and not m.is_tool_call and m.has_text:
            out.append(Message.user(m.content or ""))
        elif m.role == "user":
            calls = [ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in m.tool_calls or []]
            if calls or m.has_text:
                out.append(Message.assistant(m.content if m.has_text else None, calls or None))
        elif m.role == "tool" and m.requestor == "user":
            out.append(Message.tool(m.id or "", _call_name(trajectory, m.id), m.content or ""))
    return out


def _call_name(trajectory: list[TauMessage], call_id: str | None) -> str:
    for m in reversed(trajectory):
        for c in m.tool_calls or []:
            if c.id == call_id:
                return c.name
    return "tool"
