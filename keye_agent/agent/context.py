"""Keeping the conversation inside the model's context window, without dropping anything silently.

The loop counts tokens through the backend once per message (cached), so the check before each model call costs
the same at step 200 as at step 2. When the conversation would not leave room for the answer, compaction
strategies run in order until it fits; each says what it did, and the loop records that in the trajectory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from keye_agent.types import Message, MessageList

Counter = Callable[[Sequence[Message]], int]


class Conversation:
    """The messages the model sees, with a cached token count per message."""

    def __init__(self, counter: Counter, fixed_tokens: int = 0) -> None:
        self._counter = counter
        self.messages: MessageList = MessageList()
        self._tokens: list[int] = []
        self._total = 0
        self.fixed_tokens = fixed_tokens
        """Tokens outside the messages (tool schemas), counted once."""

    def append(self, message: Message) -> None:
        n = self._counter([message])
        self.messages.append(message)
        self._tokens.append(n)
        self._total += n

    def replace(self, i: int, message: Message) -> None:
        n = self._counter([message])
        self._total += n - self._tokens[i]
        self.messages[i] = message
        self._tokens[i] = n

    def delete(self, start: int, stop: int) -> None:
        self._total -= sum(self._tokens[start:stop])
        del self.messages[start:stop]
        del self._tokens[start:stop]

    def insert(self, i: int, message: Message) -> None:
        n = self._counter([message])
        self.messages.insert(i, message)
        self._tokens.insert(i, n)
        self._total += n

    def tokens_of(self, i: int) -> int:
        return self._tokens[i]

    @property
    def total(self) -> int:
        return self._total + self.fixed_tokens

    def step_starts(self) -> list[int]:
        """Indices of assistant messages: each starts one step (its tool results follow it)."""
        return [i for i, m in enumerate(self.messages) if m.role == "assistant"]


class CompactionStrategy(Protocol):
    """Shrinks ``conv`` towards ``budget`` tokens, never touching messages before ``first`` (system prompt, task)
    nor the last ``keep_recent`` steps. Returns a note per change made."""

    def __call__(self, conv: Conversation, budget: int, first: int, keep_recent: int) -> list[str]: ...


ELIDED_PREFIX = "[elided to fit the context window:"


@dataclass
class ElideOldToolOutputs:
    """Replace the outputs of old tool calls with a one-line note (oldest first)."""

    min_tokens: int = 32

    def __call__(self, conv: Conversation, budget: int, first: int, keep_recent: int) -> list[str]:
        starts = conv.step_starts()
        protected_from = starts[-keep_recent] if keep_recent and len(starts) >= keep_recent else len(conv.messages)
        notes = []
        for i in range(first, protected_from):
            if conv.total <= budget:
                break
            m = conv.messages[i]
            if m.role != "tool" or conv.tokens_of(i) < self.min_tokens or m.text.startswith(ELIDED_PREFIX):
                continue
            chars = len(m.text)
            conv.replace(i, Message.tool(m.tool_call_id or "", m.name or "", (
                f"{ELIDED_PREFIX} the output of {m.name} ({chars} characters) was removed; "
                "the full output is kept in the trajectory. Call the tool again if you need it.]")))
            notes.append(f"elided the output of tool {m.name!r} (message {i}, {chars} characters)")
        return notes


@dataclass
class DropOldSteps:
    """Remove whole old steps (the assistant turn and its tool results), leaving one note in their place."""

    def __call__(self, conv: Conversation, budget: int, first: int, keep_recent: int) -> list[str]:
        note_at = first
        has_note = note_at < len(conv.messages) and conv.messages[note_at].text.startswith(_NOTE_PREFIX)
        dropped = int(conv.messages[note_at].text[len(_NOTE_PREFIX):].split(" ")[0]) if has_note else 0
        if not has_note:
            # the note takes room too: put it in first, so the loop below makes space for it
            conv.insert(note_at, _drop_note(0))
        removed_now = 0
        while conv.total > budget:
            starts = [i for i in conv.step_starts() if i > note_at]
            if len(starts) <= max(keep_recent, 1):
                break
            conv.delete(starts[0], starts[1])
            removed_now += 1
        if not removed_now:
            if not has_note:
                conv.delete(note_at, note_at + 1)
            return []
        conv.replace(note_at, _drop_note(dropped + removed_now))
        return [f"removed {removed_now} old steps ({dropped + removed_now} in all) to fit the context window"]


_NOTE_PREFIX = "[context note: "


def _drop_note(n: int) -> Message:
    return Message.user(
        f"{_NOTE_PREFIX}{n} earlier steps were removed to fit the context window; they are kept in the trajectory. "
        "Continue from the steps below.]"
    )


@dataclass
class ContextPolicy:
    """How the loop keeps the conversation inside the window."""

    max_tool_output_chars: int = 16000
    """A longer tool output is cut (head and tail kept) with a note saying how much was cut."""
    reserve_tokens: int | None = None
    """Room left for the answer; None uses the generation settings' max_tokens."""
    keep_recent_steps: int = 2
    """Steps that compaction never touches."""
    strategies: list[CompactionStrategy] = field(default_factory=lambda: [ElideOldToolOutputs(), DropOldSteps()])


def cut_output(text: str, limit: int) -> tuple[str, str | None]:
    """Cut ``text`` to about ``limit`` characters, keeping its head and tail; returns (text, note or None)."""
    if len(text) <= limit:
        return text, None
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    note = f"tool output cut: {cut} of {len(text)} characters removed from the middle (limit {limit})"
    marker = (f"\n[... {cut} characters cut here: the output was longer than {limit} characters; "
              "ask for a narrower result if you need the middle ...]\n")
    return text[:head] + marker + text[-tail:], note
