"""`ScriptedBackend`: a model that answers from a script. For tests, demos of the loop's mechanics and replays of
saved trajectories; it never pretends to be a real model (its name says "scripted")."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from keye_agent.errors import ModelError
from keye_agent.formats.hermes import HERMES
from keye_agent.types import AssistantTurn, CallFormat, GenerationSettings, Message, Trajectory, Usage

from .base import BaseBackend

ScriptItem = AssistantTurn | str | Callable[[Sequence[Message], Sequence[dict[str, Any]] | None], "AssistantTurn | str"]

# words, numbers and single punctuation marks: close to a BPE count on English text, and a real count, not a guess
_TOKENS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def count_text_tokens(text: str) -> int:
    return len(_TOKENS.findall(text))


class ScriptedBackend(BaseBackend):
    """Answers with the next item of ``script``: an :class:`AssistantTurn`, raw model text (parsed with
    :func:`parse_tool_calls`, exactly as a local model's output is), or a function of (messages, tools).

    Example::

        backend = ScriptedBackend([
            '<tool_call>\\n{"name": "add", "arguments": {"a": 2, "b": 2}}\\n</tool_call>',
            "2 + 2 = 4.",
        ])
    """

    call_format: CallFormat | None = HERMES
    """The format its text items are parsed in, so the planner loop words its corrections for it (None: a neutral
    wording, no tags)."""

    def __init__(self, script: Iterable[ScriptItem], *, name: str = "scripted", context_window: int = 32768,
                 stream_chunk_chars: int = 16, call_format: CallFormat | None = HERMES) -> None:
        self._script = list(script)
        self.call_format = call_format
        self._pos = 0
        self.name = name
        self.context_window = context_window
        self.stream_chunk_chars = stream_chunk_chars
        self.requests: list[tuple[int, GenerationSettings]] = []
        """(number of messages seen, settings) per call, for tests."""
        self._counts: dict[int, tuple[Message, int]] = {}
        # (the list counted last, its revision, how many of its messages were counted, their tokens)
        self._last: tuple[Any, int, int, int] | None = None
        self._tools_count: tuple[Sequence[dict[str, Any]], int] | None = None

    @classmethod
    def from_trajectory(cls, trajectory: Trajectory, **kwargs: Any) -> ScriptedBackend:
        """Replay the model turns of a saved trajectory, in order."""
        return cls([t.model_copy() for t in trajectory.model_turns()], name=f"replay:{trajectory.model}", **kwargs)

    @property
    def remaining(self) -> int:
        return len(self._script) - self._pos

    def _message_tokens(self, m: Message) -> int:
        hit = self._counts.get(id(m))
        if hit is not None and hit[0] is m:
            return hit[1]
        n = 4 + count_text_tokens(m.text)  # 4: the role header and end-of-turn markers
        if m.tool_calls:
            for c in m.tool_calls:
                n += count_text_tokens(c.name) + count_text_tokens(repr(c.arguments)) + 4
        self._counts[id(m)] = (m, n)
        return n

    def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None) -> int:
        revision = getattr(messages, "revision", None)
        last = self._last
        if revision is not None and last is not None and last[0] is messages and last[1] == revision \
                and last[2] <= len(messages):
            # the same growing list, nothing before the end changed: count only the new messages
            total = last[3] + sum(self._message_tokens(m) for m in messages[last[2]:])
        else:
            total = sum(self._message_tokens(m) for m in messages)
        if revision is not None:
            self._last = (messages, revision, len(messages), total)
        if tools:
            cached = self._tools_count
            if cached is None or cached[0] is not tools:  # the loop passes the same schema list at every step
                cached = self._tools_count = (tools, sum(count_text_tokens(repr(t)) for t in tools))
            total += cached[1]
        return total

    async def agenerate(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AssistantTurn:
        if self._pos >= len(self._script):
            raise ModelError(f"scripted backend {self.name!r} ran out of turns after {len(self._script)}")
        item = self._script[self._pos]
        self._pos += 1
        self.requests.append((len(messages), settings))
        if callable(item) and not isinstance(item, AssistantTurn | str):
            item = item(messages, tools)
        if isinstance(item, str):
            from .parsing import parse_tool_calls

            parsed = parse_tool_calls(item)
            turn = AssistantTurn(
                text=parsed.text, reasoning=parsed.reasoning, tool_calls=list(parsed.tool_calls),
                parse_errors=list(parsed.errors), raw=item,
                finish_reason="tool_calls" if parsed.tool_calls else "stop",
            )
            completion = count_text_tokens(item)
        else:
            turn = item.model_copy()
            completion = count_text_tokens(turn.text) + sum(
                count_text_tokens(c.name) + count_text_tokens(repr(c.arguments)) for c in turn.tool_calls)
        turn.usage = Usage(prompt_tokens=self.count_tokens(messages, tools), completion_tokens=completion)
        return turn
