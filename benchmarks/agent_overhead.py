"""Per-step overhead of the planner loop and the cost of one validated tool dispatch, against smolagents.

Both agents are driven the same way: a scripted model that calls a no-op tool N-1 times and then gives the final
answer through the `final_answer` tool. What is timed is the framework: building the prompt, recording the step,
validating and dispatching the call, feeding the result back. Our Agent runs with its defaults (trajectory recording,
argument validation, context management, streaming events, a sync tool run in the worker pool, the scripted backend
counting tokens of every message for real); the settings are printed beside the table.

smolagents' scripted model returns a fixed token usage without counting (which favours it), and its logging is off.

Usage: python benchmarks/agent_overhead.py [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
import warnings

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


def ours_run(n: int, inline: bool = False) -> float:
    turns = [AssistantTurn(tool_calls=[ToolCall(id=f"c{i}", name="noop", arguments={"x": i})]) for i in range(n - 1)]
    turns.append(AssistantTurn(tool_calls=[ToolCall(id="end", name="final_answer", arguments={"answer": "done"})]))
    agent = Agent(ScriptedBackend(turns), [NOOP_INLINE if inline else noop], max_steps=n + 1)
    t0 = time.perf_counter()
    result = agent.run("benchmark")
    dt = time.perf_counter() - t0
    assert result.status == "completed" and result.steps == n, (result.status, result.steps)
    return dt


def smol_run(n: int) -> float | None:
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
    t0 = time.perf_counter()
    out = agent.run("benchmark")
    dt = time.perf_counter() - t0
    assert out == "done", out
    return dt


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

        async def measure(reg: ToolRegistry = reg, call: ToolCall = call) -> list[float]:
            times = []
            for _ in range(200):  # warm-up
                await reg.call(call)
            for _ in range(samples):
                t0 = time.perf_counter()
                r = await reg.call(call)
                times.append(time.perf_counter() - t0)
                assert r.ok
            return times

        times = sorted(asyncio.run(measure()))
        out[label] = (times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6)
    validate_times = []
    reg = ToolRegistry([noop])
    call = ToolCall(id="c", name="noop", arguments={"x": 1})
    for _ in range(samples):
        t0 = time.perf_counter()
        reg.validate(call)
        validate_times.append(time.perf_counter() - t0)
    validate_times.sort()
    out["validation only"] = (validate_times[len(validate_times) // 2] * 1e6,
                              validate_times[int(len(validate_times) * 0.99)] * 1e6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    for n in LENGTHS:  # warm-up both frameworks (imports, caches)
        ours_run(min(n, 10))
        ours_run(min(n, 10), inline=True)
        smol_run(min(n, 10))
    rows = []
    for n in LENGTHS:
        ours = statistics.median(ours_run(n) for _ in range(args.repeats)) / n * 1e3
        inline = statistics.median(ours_run(n, inline=True) for _ in range(args.repeats)) / n * 1e3
        smol_times = [smol_run(n) for _ in range(args.repeats)]
        smol = statistics.median(smol_times) / n * 1e3 if smol_times[0] is not None else None
        rows.append((n, ours, inline, smol))
    disp = dispatch_costs(args.samples)

    cpu = platform.processor() or platform.machine()
    settings = ("Agent defaults: trajectory recording on, jsonschema validation on, ContextPolicy() on, "
                "stream_deltas=True, ScriptedBackend counting tokens of every message, @tool sync function "
                f"in the worker pool; median of {args.repeats} runs; {cpu}, Python {platform.python_version()}")
    if args.json:
        print(json.dumps({"steps": rows, "dispatch_us": disp, "settings": settings}))
        return
    print(settings)
    print()
    print(f"{'steps':>6} | {'keye-agent ms/step':>18} | {'same, inline tool':>17} | {'smolagents ms/step':>18} | "
          f"{'smol/ours':>9}")
    print("-" * 82)
    for n, ours, inline, smol in rows:
        s = f"{smol:18.3f}" if smol is not None else f"{'not installed':>18}"
        r = f"{smol / ours:9.2f}" if smol is not None else f"{'-':>9}"
        print(f"{n:>6} | {ours:18.3f} | {inline:17.3f} | {s} | {r}")
    flat = rows[-1][1] / rows[0][1]
    print(f"keye-agent per-step cost, 200 steps vs 10 steps: {flat:.2f}x")
    print()
    print(f"{'validated dispatch (registry.call)':<36} | {'p50 us':>8} | {'p99 us':>8}")
    print("-" * 58)
    for label, (p50, p99) in disp.items():
        print(f"{label:<36} | {p50:8.1f} | {p99:8.1f}")


if __name__ == "__main__":
    main()
