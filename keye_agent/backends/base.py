"""Shared behaviour of model backends: the sync wrapper, a default stream, and token counting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from keye_agent._sync import run_sync
from keye_agent.errors import ModelError
from keye_agent.types import AssistantTurn, GenerationSettings, Message, StreamChunk


def approx_token_count(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters a token), for backends that have no tokenizer."""
    return (len(text) + 3) // 4


class BaseBackend:
    """Base class of the shipped backends. Subclasses implement :meth:`agenerate` and may override
    :meth:`astream` (the default streams the text in pieces of ``stream_chunk_chars``) and :meth:`count_tokens`."""

    name: str = "backend"
    context_window: int = 32768
    stream_chunk_chars: int | None = None
    """The default stream's text deltas: pieces of this many characters (None: the whole text in one delta)."""

    async def agenerate(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AssistantTurn:
        raise NotImplementedError

    async def astream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AsyncIterator[StreamChunk]:
        turn = await self.agenerate(messages, tools, settings)
        if turn.reasoning:
            yield StreamChunk("reasoning", turn.reasoning)
        n = self.stream_chunk_chars or len(turn.text) or 1
        for i in range(0, len(turn.text), n):
            yield StreamChunk("text", turn.text[i:i + n])
        yield StreamChunk("done", turn=turn)

    def generate(
        self,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]] | None = None,
        settings: GenerationSettings | None = None,
    ) -> AssistantTurn:
        """Sync wrapper of :meth:`agenerate`."""
        return run_sync(self.agenerate(messages, tools, settings or GenerationSettings()))

    def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None) -> int:
        """Estimated prompt tokens; backends with a tokenizer override this with an exact count."""
        total = 0
        for m in messages:
            total += 4 + approx_token_count(m.text)
            if m.tool_calls:
                for c in m.tool_calls:
                    total += approx_token_count(c.name) + approx_token_count(json.dumps(c.arguments))
        if tools:
            total += approx_token_count(json.dumps(list(tools)))
        return total


class StreamingBackend(BaseBackend):
    """Base class of backends that produce their answer as a stream (local models): :meth:`agenerate` drains
    :meth:`astream` and returns its final turn."""

    async def agenerate(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AssistantTurn:
        turn: AssistantTurn | None = None
        async for chunk in self.astream(messages, tools, settings):
            if chunk.kind == "done":
                turn = chunk.turn
        if turn is None:
            raise ModelError(f"backend {self.name!r} ended its stream without a final turn")
        return turn
