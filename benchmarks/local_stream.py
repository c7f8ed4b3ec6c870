"""Cost of turning generated token ids into streamed text, per answer length: the one streamer of the local
backends (``backends._local.TextStream`` over an incremental detokenizer) against the transformers backend's former
way, measured in the same run (decode the whole answer again at every token, then look for stop strings in it and
hold back a tail that may become one). Real SmolLM2 tokenizer (the demo model's), no model: only the text side
of each step is timed. Correctness first: both must stream exactly the text a full decode gives.

    .venv/bin/python benchmarks/local_stream.py
"""

from __future__ import annotations

import platform
import time
from typing import Any

from keye_agent.backends._local import TextStream
from keye_agent.backends.demo_model import ensure_demo_model
from keye_agent.backends.transformers import _Decoding
from keye_agent.model.tokenizer import IncrementalDecoder

STOPS = ["<tool_response>", "</tool_response>"]
TEXT = ("Let me work this out step by step. The population of Paris is about 2.1 million; Grüße aus Köln 🌤. "
        'def add(a, b):\n    return a + b\n{"a": [1, 2, 3], "b": null}\n')


def full_redecode(tokenizer: Any, ids: list[int]) -> str:
    """The former transformers streamer: decode all ids so far at every token."""
    generated: list[int] = []
    text, emitted, shown = "", 0, []
    for t in ids:
        generated.append(t)
        text = tokenizer.decode(generated, skip_special_tokens=False)
        if text.endswith("\ufffd"):
            continue
        hit = next((s for s in STOPS if s in text), None)
        if hit is not None:
            text = text[: text.index(hit)]
            break
        hold = max((k for s in STOPS for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        shown.append(text[emitted:len(text) - hold])
        emitted = len(text) - hold
    shown.append(text[emitted:])
    return "".join(shown)


def text_stream(tokenizer: Any, ids: list[int]) -> str:
    shown: list[str] = []
    stream = TextStream(IncrementalDecoder(_Decoding(tokenizer)), STOPS, lambda item: shown.append(item[1]))  # type: ignore[arg-type]
    for t in ids:
        if not stream.feed(t):
            break
    stream.finish()
    return "".join(shown)


def best_of(fn: Any, *args: Any, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ensure_demo_model(quiet=True))
    base = tok(TEXT * 400, add_special_tokens=False)["input_ids"]
    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}, SmolLM2 tokenizer")
    print(f"{'answer tokens':>14}{'TextStream ms':>15}{'us/token':>10}{'full re-decode ms':>19}{'us/token':>10}"
          f"{'ratio':>8}")
    for n in (250, 1000, 4000):
        ids = base[:n]
        want = tok.decode(ids, skip_special_tokens=False)
        if text_stream(tok, ids) != want or full_redecode(tok, ids) != want:
            raise SystemExit(f"a streamer does not reproduce the full decode at {n} tokens")
        ours = best_of(text_stream, tok, ids)
        old = best_of(full_redecode, tok, ids, repeats=1 if n > 1000 else 3)
        print(f"{n:>14}{ours * 1e3:>15.1f}{ours / n * 1e6:>10.1f}{old * 1e3:>19.1f}{old / n * 1e6:>10.1f}"
              f"{old / ours:>7.1f}x")


if __name__ == "__main__":
    main()
