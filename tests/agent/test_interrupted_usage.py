"""A model turn cut off by a cancel or by the wall clock still counts its tokens: the prompt and what was streamed
before the stop, counted with the backend's tokenizer. The model is a scripted backend that streams slowly (only
the model is scripted; the loop is real)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from keye_agent.agent import Agent
from keye_agent.agent.events import TextDelta
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.types import GenerationSettings, Message, StreamChunk


class SlowScripted(ScriptedBackend):
    async def astream(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
                      settings: GenerationSettings) -> AsyncIterator[StreamChunk]:
        async for chunk in super().astream(messages, tools, settings):
            await asyncio.sleep(0.05)
            yield chunk


LONG = "a long answer that streams slowly, chunk after chunk, " * 20


def test_a_cancelled_turn_counts_its_prompt_and_streamed_tokens() -> None:
    async def go() -> Any:
        agent = Agent(SlowScripted([LONG], stream_chunk_chars=8), instructions="Be brief.")
        handle = agent.start("Tell me a long story.")
        seen = 0
        async for ev in handle.events():
            if isinstance(ev, TextDelta):
                seen += 1
                if seen == 3:
                    handle.cancel()
        return await handle

    result = asyncio.run(go())
    assert result.status == "cancelled"
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    step = result.trajectory.steps[-1]
    assert step.usage == result.usage and any("interrupted turn" in n for n in step.notes)


def test_a_turn_cut_by_the_wall_clock_counts_its_tokens() -> None:
    agent = Agent(SlowScripted([LONG], stream_chunk_chars=8))
    result = agent.run("Tell me a long story.", max_wall_s=0.4)
    assert result.status == "timeout"
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
