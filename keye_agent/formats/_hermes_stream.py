"""The streaming split of Hermes output: raw text deltas into reasoning and text, tool-call blocks held back."""

from __future__ import annotations

from keye_agent.formats._hermes_tags import CALL_CLOSE, CALL_OPEN, THINK_CLOSE, THINK_OPEN

_MARKERS = {
    "text": {CALL_OPEN: "call", THINK_OPEN: "reasoning"},
    "reasoning": {THINK_CLOSE: "text"},
    "call": {CALL_CLOSE: "text"},
}


class StreamSplitter:
    """Turns raw text deltas into ("text" | "reasoning", delta) pieces, hiding ``<tool_call>`` blocks (they reach
    the user as parsed calls, not as JSON). A tail that could still become a tag is held back until it cannot, so
    the work per delta is proportional to the delta (the buffer never holds more than a tag's length of old text).

    >>> s = StreamSplitter()
    >>> s.feed("Hi <tool") + s.feed('_call>{"a": 1}</tool_call> bye') + s.flush()
    [('text', 'Hi '), ('text', ' bye')]
    """

    def __init__(self, *, in_reasoning: bool = False) -> None:
        self._state = "reasoning" if in_reasoning else "text"
        self._buf = ""

    def feed(self, delta: str) -> list[tuple[str, str]]:
        buf = self._buf + delta
        out: list[tuple[str, str]] = []
        while True:
            markers = _MARKERS[self._state]
            hits = [(at, m) for m in markers if (at := buf.find(m)) >= 0]
            if hits:
                at, marker = min(hits)
                self._emit(buf[:at], out)
                buf = buf[at + len(marker):]
                self._state = markers[marker]
                continue
            keep = max((k for m in markers for k in range(1, len(m)) if buf.endswith(m[:k])), default=0)
            self._emit(buf[:len(buf) - keep], out)
            self._buf = buf[len(buf) - keep:]
            return out

    def flush(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self._emit(self._buf, out)
        self._buf = ""
        return out

    def _emit(self, text: str, out: list[tuple[str, str]]) -> None:
        if text and self._state != "call":
            out.append((self._state, text))
