"""Per-step overhead of the planner loop and the cost of one validated tool dispatch, against smolagents.

Both agents are driven the same way: a scripted model that calls a no-op tool N-1 times and then gives the final
answer through the `final_answer` tool. What is timed is the framework: building the prompt, recording the step,
validating and dispatching the call, feeding the result back. Our Agent runs with its defaults (trajectory recording,
argument validation, context management, streaming events, a sync tool run in the worker pool, the scripted backend
counting tokens of every message for real); the settings are printed beside the table.

smolagents' scripted model returns a fixed token usage without counting (which favours it), and its logging is off.

Each row gives wall-clock and CPU time (the process's, worker threads included) per step, medians of the runs; the
frameworks alternate run by run, so a change of machine load hits both. On a shared machine the wall-clock figure
includes waiting for a core (every sync tool call hands work to a worker thread and back); the CPU figure does not.

Usage: python benchmarks/agent_overhead.py [--repeats 5] [--warmup-s 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from keye_agent.agent import Agent
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tools import Tool, ToolRegistry, tool
from keye_agent.types import AssistantTurn, ToolCall

LENGTHS = (10, 50, 200)


@tool
def noop(x: int) -> str:
    """Do nothing.

    Args:
        x: any integer
    """
    return "ok"


NOOP_INLINE = Tool(name="noop", description="Do nothing.", parameters=noop.parameters, fn=noop.fn, inline=True)


def ours_run(n: int, inline: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``n`` steps."""
    turns = [AssistantTurn(tool_calls=[ToolCall(id=f"c{i}", name="noop", arguments={"x": i})]) for i in range(n - 1)]
    turns.append(AssistantTurn(tool_calls=[ToolCall(id="end", name="final_answer", arguments={"answer": "done"})]))
    agent = Agent(ScriptedBackend(turns), [NOOP_INLINE if inline else noop], max_steps=n + 1)
    t0, c0 = time.perf_counter(), time.process_time()
    result = agent.run("benchmark")
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    assert result.status == "completed" and result.steps == n, (result.status, result.steps)
    return dt, dc


def smol_run(n: int) -> tuple[float, float] | None:
    try:
        from smolagents import ToolCallingAgent
        from smolagents import tool as smol_tool
        from smolagents.models import (
            ChatMessage,
            ChatMessageToolCall,
            ChatMessageToolCallFunction,
            MessageRole,
            Model,
        )
        from smolagents.monitoring import LogLevel, TokenUsage
    except ImportError:
        return None

    @smol_tool
    def noop_smol(x: int) -> str:
        """Do nothing.

        Args:
            x: any integer
        """
        return "ok"

    class Scripted(Model):
        def __init__(self, n: int) -> None:
            super().__init__(model_id="scripted")
            self.i = 0
            self.n = n

        def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kw):
            self.i += 1
            if self.i < self.n:
                fn = ChatMessageToolCallFunction(name="noop_smol", arguments={"x": self.i})
            else:
                fn = ChatMessageToolCallFunction(name="final_answer", arguments={"answer": "done"})
            return ChatMessage(role=MessageRole.ASSISTANT, content=None,
                               tool_calls=[ChatMessageToolCall(function=fn, id=f"c{self.i}", type="function")],
                               token_usage=TokenUsage(input_tokens=10, output_tokens=5))

    warnings.filterwarnings("ignore", category=UserWarning, module="smolagents")
    agent = ToolCallingAgent(tools=[noop_smol], model=Scripted(n), max_steps=n + 1, verbosity_level=LogLevel.OFF)
    t0, c0 = time.perf_counter(), time.process_time()
    out = agent.run("benchmark")
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    assert out == "done", out
    return dt, dc


def dispatch_costs(samples: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 in microseconds of one validated `registry.call` for three kinds of no-op tool."""

    async def anoop(x: int) -> str:
        return "ok"

    variants = {
        "sync tool (default: worker pool)": noop,
        "sync tool, inline=True": Tool(name="noop", description="Do nothing.", parameters=noop.parameters,
                                       fn=noop.fn, inline=True),
        "async tool": Tool(name="noop", description="Do nothing.", parameters=noop.parameters, fn=anoop),
    }
    out = {}
    for label, t in variants.items():
        reg = ToolRegistry([t])
        call = ToolCall(id="c", name="noop", arguments={"x": 1})
        out[label] = _percentiles(asyncio.run(_await_times(lambda reg=reg, call=call: reg.call(call), samples,
                                                           ok=lambda r: r.ok)))
    validate_times = []
    reg = ToolRegistry([noop])
    call = ToolCall(id="c", name="noop", arguments={"x": 1})
    for _ in range(samples):
        t0 = time.perf_counter()
        reg.validate(call)
        validate_times.append(time.perf_counter() - t0)
    out["validation only"] = _percentiles(validate_times)
    out["hand-off only (pool, no tool)"] = _percentiles(_handoff_times(samples))
    out["  same, no eager wait"] = _percentiles(_handoff_times(samples, eager=False))
    out["floor: 2-thread queue ping-pong"] = _percentiles(_pingpong_times(samples))
    return out


def _percentiles(times: list[float]) -> tuple[float, float]:
    """(p50, p99) in microseconds."""
    times = sorted(times)
    return times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6


async def _await_times(make: Callable[[], Awaitable[Any]], samples: int,
                       ok: Callable[[Any], bool] = lambda r: True) -> list[float]:
    """Seconds of each of ``samples`` awaits of ``make()``, after 200 to warm up; each result must be ``ok``."""
    for _ in range(200):
        await make()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        result = await make()
        times.append(time.perf_counter() - t0)
        assert ok(result), result
    return times


def _handoff_times(samples: int, eager: bool = True) -> list[float]:
    """The worker pool's round trip alone: a no-op to a warm worker and its result back on the event loop's
    thread, with the registry's eager wait (the default) or without it (back through the loop's selector)."""
    from keye_agent.tools.registry import _POOL, EAGER_WAIT_S

    def nothing() -> None:
        return None

    wait = EAGER_WAIT_S if eager else 0.0
    return asyncio.run(_await_times(lambda: _POOL.run_async(nothing, eager_s=wait), samples))


def _pingpong_times(samples: int) -> list[float]:
    """What any hand-off to another thread costs on this machine: one item to a warm thread and one back, no
    event loop (two thread wake-ups; on a VM whose idle vCPUs halt, each wake-up of another vCPU is an exit)."""
    import queue
    import threading

    there: queue.SimpleQueue[int] = queue.SimpleQueue()
    back: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        while (item := there.get()) >= 0:
            back.put(item)

    worker = threading.Thread(target=echo, daemon=True)
    worker.start()
    for _ in range(200):
        there.put(1)
        back.get()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        there.put(1)
        back.get()
        times.append(time.perf_counter() - t0)
    there.put(-1)
    worker.join()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--warmup-s", type=float, default=2.0)
    args = ap.parse_args()

    # warm-up, both frameworks alike, for at least --warmup-s (imports, caches, and a freshly started machine's
    # clock: the first second of a cold VM ran every column 1.5x slower)
    end = time.perf_counter() + args.warmup_s
    while True:
        for n in LENGTHS:
            ours_run(min(n, 10))
            ours_run(min(n, 10), inline=True)
            smol_run(min(n, 10))
        if time.perf_counter() >= end:
            break
    rows = []
    for n in LENGTHS:
        runs: dict[str, list[tuple[float, float]]] = {"ours": [], "inline": [], "smol": []}
        for _ in range(args.repeats):  # alternate, so that a change of load hits every column alike
            runs["ours"].append(ours_run(n))
            runs["inline"].append(ours_run(n, inline=True))
            smol = smol_run(n)
            if smol is not None:
                runs["smol"].append(smol)

        def per_step(key: str, i: int, n: int = n, runs: dict = runs) -> float | None:
            return statistics.median(r[i] for r in runs[key]) / n * 1e3 if runs[key] else None

        rows.append({"steps": n, **{f"{k}_{m}": per_step(k, i) for k in runs for i, m in enumerate(("wall", "cpu"))}})
    disp = dispatch_costs(args.samples)

    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    settings = ("Agent defaults: trajectory recording on, jsonschema validation on, ContextPolicy() on, "
                "stream_deltas=True, ScriptedBackend counting tokens of every message, @tool sync function "
                f"in the worker pool; median of {args.repeats} runs; {cpu}, {os.cpu_count()} cores, load average "
                f"{load:.1f}, Python {platform.python_version()}")
    if args.json:
        print(json.dumps({"steps": rows, "dispatch_us": disp, "settings": settings}))
        return
    print(settings)
    print()

    def cell(v: float | None, width: int) -> str:
        return f"{v:{width}.3f}" if v is not None else f"{'-':>{width}}"

    print(f"{'':>6} | {'keye-agent (default)':^19} | {'same, inline tool':^19} | {'smolagents':^19} | "
          f"{'smol / ours':^15}")
    print(f"{'steps':>6} | {'wall ms':>9} {'CPU ms':>9} | {'wall ms':>9} {'CPU ms':>9} | {'wall ms':>9} {'CPU ms':>9} | "
          f"{'wall':>7} {'CPU':>7}")
    print("-" * 92)
    for r in rows:
        ratio = [f"{r[f'smol_{m}'] / r[f'ours_{m}']:7.2f}" if r["smol_wall"] else f"{'-':>7}" for m in ("wall", "cpu")]
        print(f"{r['steps']:>6} | {cell(r['ours_wall'], 9)} {cell(r['ours_cpu'], 9)} | {cell(r['inline_wall'], 9)} "
              f"{cell(r['inline_cpu'], 9)} | {cell(r['smol_wall'], 9)} {cell(r['smol_cpu'], 9)} | {' '.join(ratio)}")
    flat = rows[-1]["ours_cpu"] / rows[0]["ours_cpu"]
    print(f"keye-agent per-step CPU, 200 steps vs 10 steps: {flat:.2f}x")
    print()
    print(f"{'validated dispatch (registry.call)':<36} | {'p50 us':>8} | {'p99 us':>8}")
    print("-" * 58)
    for label, (p50, p99) in disp.items():
        print(f"{label:<36} | {p50:8.1f} | {p99:8.1f}")


if __name__ == "__main__":
    main()
