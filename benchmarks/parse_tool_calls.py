"""Cost and coverage of parse_tool_calls against the minimal Hermes parser most servers started from.

Baseline: ``re.findall(r"<tool_call>(.*?)</tool_call>")`` + ``json.loads`` per block + one ``<think>`` regex
(the shape of the hermes parsers in vLLM/SGLang before their robustness fixes), measured in the same run.
Coverage first: how many hand-written corpus cases (tests/backends/parser_corpus.py) each parser gets exactly
right; then time per output (p50 / p99 over repeats, warm-up excluded), CPU, one thread. The last rows are the
hostile outputs of issue 24 item 10 (repeated unclosed blocks, a trailing comma in a large array, deep Python-literal
nesting), with the time per 100 KB (target: 50 ms or less). Run it with PYTHONPATH at an older checkout to time the
code before a change on the same machine.

    .venv/bin/python benchmarks/parse_tool_calls.py
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "backends"))

from parser_corpus import CORPUS  # noqa: E402

from keye_agent.backends.parsing import parse_tool_calls  # noqa: E402

_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_THINK = re.compile(r"<think>(.*?)</think>", re.S)


def naive_parse(text: str) -> tuple[str, str | None, list[tuple[str, dict[str, Any]]], int]:
    """(text, reasoning, calls, errors) the minimal way."""
    m = _THINK.search(text)
    reasoning = m.group(1).strip() or None if m else None
    rest = text[m.end():] if m else text
    calls: list[tuple[str, dict[str, Any]]] = []
    errors = 0
    for block in _BLOCK.findall(rest):
        try:
            obj = json.loads(block)
            calls.append((obj["name"], obj.get("arguments", {})))
        except (ValueError, KeyError, TypeError):
            errors += 1
    return _BLOCK.sub("", rest).strip(), reasoning, calls, errors


def correct_ours(case: Any) -> bool:
    out = parse_tool_calls(case.output)
    return (out.text == case.text and out.reasoning == case.reasoning and len(out.errors) == len(case.errors)
            and [(c.name, c.arguments) for c in out.tool_calls] == [(c[-2], c[-1]) for c in case.calls])


def correct_naive(case: Any) -> bool:
    text, reasoning, calls, errors = naive_parse(case.output)
    return (text == case.text and reasoning == case.reasoning and errors == len(case.errors)
            and calls == [(c[-2], c[-1]) for c in case.calls])


def timing_us(fn: Any, inputs: list[str], repeats: int) -> tuple[float, float]:
    for s in inputs:  # warm-up
        fn(s)
    samples: list[float] = []
    for _ in range(repeats):
        for s in inputs:
            t0 = time.perf_counter()
            fn(s)
            samples.append((time.perf_counter() - t0) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def main() -> None:
    ours_ok = sum(correct_ours(c) for c in CORPUS)
    naive_ok = sum(correct_naive(c) for c in CORPUS)
    if ours_ok != len(CORPUS):
        raise SystemExit(f"parse_tool_calls fails {len(CORPUS) - ours_ok} corpus case(s): run the tests first")

    one = '<think>\nThe user wants the weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": ' \
          '{"city": "Paris", "unit": "celsius"}}\n</tool_call>'
    call = '<tool_call>\n{"name": "write_file", "arguments": {"path": "a.py", "content": "' + "x = 1\\n" * 300 + \
           '"}}\n</tool_call>\n'
    long = "Here is the plan.\n" * 50 + call * 20
    unclosed = ('<tool_call>\n{"name": "f", "arguments": {"a": "x' + "y" * 40 + '"\n') * 800
    trailing = '<tool_call>{"name": "f", "arguments": {"v": [' + "1, " * 33_000 + "]}}</tool_call>"
    deep = '<tool_call>{"name": "f", "arguments": ' + "{'a': " * 100_000 + "1" + "}" * 100_000 + "}</tool_call>"
    workloads = {
        "one call + think (150 B)": ([one], 2000),
        "20 calls + prose (45 kB)": ([long], 50),
        f"corpus, {len(CORPUS)} outputs": ([c.output for c in CORPUS], 50),
        f"800 unclosed blocks ({len(unclosed) // 1000} kB)": ([unclosed], 3),
        f"trailing comma ({len(trailing) // 1000} kB)": ([trailing], 3),
        f"100k-deep literal ({len(deep) // 1000} kB)": ([deep], 3),
    }
    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}, one thread")
    print(f"corpus cases parsed exactly right: parse_tool_calls {ours_ok}/{len(CORPUS)}, "
          f"naive baseline {naive_ok}/{len(CORPUS)}\n")
    print(f"{'workload':<32}{'ours p50 us':>13}{'ours p99 us':>13}{'naive p50 us':>14}{'naive p99 us':>14}"
          f"{'p50 ratio':>11}{'ours ms/100kB':>15}")
    for name, (inputs, repeats) in workloads.items():
        o50, o99 = timing_us(parse_tool_calls, inputs, repeats)
        n50, n99 = timing_us(naive_parse, inputs, repeats)
        per_100k = o50 / 1000 / (sum(map(len, inputs)) / len(inputs) / 100_000)
        print(f"{name:<32}{o50:>13.1f}{o99:>13.1f}{n50:>14.1f}{n99:>14.1f}{o50 / n50:>10.2f}x{per_100k:>15.1f}")


if __name__ == "__main__":
    main()
