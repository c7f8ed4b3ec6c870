"""The streaming split of Hermes output: raw text deltas into reasoning and text, tool-call blocks held back."""

from __future__ import annotations

from keye_agent.formats._hermes_tags import CALL_CLOSE, CALL_OPEN, THINK_CLOSE, THINK_OPEN


class StreamSplitter:
    """Turns raw text deltas into ("text" | "reasoning", delta) pieces the way :func:`~keye_agent.formats.hermes.parse`
    reads the whole text: a ``<think>`` block counts as reasoning only at the start of the answer (or from the first
    token when the prompt opened it: ``in_reasoning``), and ``<tool_call>`` blocks are hidden (they reach the user as
    parsed calls, not as JSON). ``text_after_calls=False`` hides everything from the first call on (for servers
    whose text around calls is not worth showing). A tail that could still become a tag is held back until it
    cannot, so the work per delta is proportional to the delta (the buffer never holds more than a tag's length
    of old text, except whitespace before a possible ``<think>``).

    >>> s = StreamSplitter()
    >>> s.feed("<think>hm</think>Hi <tool") + s.feed('_call>{"a": 1}</tool_call> bye') + s.flush()
    [('reasoning', 'hm'), ('text', 'Hi '), ('text', ' bye')]
    """

    def __init__(self, *, in_reasoning: bool = False, text_after_calls: bool = True) -> None:
        self._state = "reasoning" if in_reasoning else "start"  # start -> reasoning -> text <-> call (-> hidden)
        self._after_call = "text" if text_after_calls else "hidden"
        self._buf = ""

    def _markers(self) -> dict[str, str]:
        if self._state == "text":
            return {CALL_OPEN: "call"}
        if self._state == "reasoning":
            return {THINK_CLOSE: "text"}
        return {CALL_CLOSE: self._after_call}

    def feed(self, delta: str) -> list[tuple[str, str]]:
        buf = self._buf + delta
        out: list[tuple[str, str]] = []
        while True:
            if self._state == "hidden":
                self._buf = ""
                return out
            if self._state == "start":
                stripped = buf.lstrip()
                if stripped.startswith(THINK_OPEN):
                    buf, self._state = stripped[len(THINK_OPEN):], "reasoning"
                    continue
                if not stripped or THINK_OPEN.startswith(stripped):
                    self._buf = buf  # could still become <think>
                    return out
                self._state = "text"
            markers = self._markers()
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
        if self._state == "start":
            self._state = "text"
        self._emit(self._buf, out)
        self._buf = ""
        return out

    def _emit(self, text: str, out: list[tuple[str, str]]) -> None:
        if text and self._state in ("text", "reasoning"):
            out.append((self._state, text))
