"""Cost of one YAML-defined HTTP tool call against the store API on loopback, against plain httpx.

Rows, each the same GET /stores/{id} answered by the same uvicorn server in this process:
  * httpx, one client reused        the floor: a kept-alive connection, no validation, no policy
  * httpx, a new client per call    what a naive tool does
  * HTTP tool via ToolRegistry.call  ours: argument validation, the network guard (a fresh guarded client and
                                     connection per call), JSONPath selection, the ToolResult
  * HTTP tool, in-process ASGI      the same tool with ``transport=httpx.ASGITransport`` (no sockets)

Correctness first: every path must return the same store name before anything is timed. Warm-up calls are not
timed. Usage: python benchmarks/http_tool_overhead.py [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from keye_agent.tau.domains.store.api import create_app, serve_in_thread
from keye_agent.tools.yaml_registry import load_registry
from keye_agent.types import ToolCall

REGISTRY = """\
version: 1
network: {allow_loopback: true}
defaults: {base_url: "${API}", retries: 0}
tools:
  - name: store_name
    kind: http
    description: name of a store
    path: /stores/{store_id}
    arguments: {store_id: {type: string, description: id, in: path}}
    response: {select: "$.store.name"}
"""
EXPECTED = "Corner Grocer Old Town"


async def _time(fn: Callable[[], Awaitable[str]], calls: int) -> list[float]:
    for _ in range(20):
        assert await fn() == EXPECTED
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def run(base: str, calls: int) -> list[tuple[str, list[float]]]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.yaml"
        path.write_text(textwrap.dedent(REGISTRY))
        reg = load_registry(path, env={"API": base})
        asgi = load_registry(path, env={"API": "http://store.invalid"}, transport=httpx.ASGITransport(app=create_app()))

    shared = httpx.AsyncClient(base_url=base)

    async def reused() -> str:
        return (await shared.get("/stores/s1")).json()["store"]["name"]

    async def fresh() -> str:
        async with httpx.AsyncClient(base_url=base) as c:
            return (await c.get("/stores/s1")).json()["store"]["name"]

    def via(registry) -> Callable[[], Awaitable[str]]:  # type: ignore[no-untyped-def]
        async def call() -> str:
            r = await registry.call(ToolCall(id="c", name="store_name", arguments={"store_id": "s1"}))
            assert r.ok, r.error
            return r.content

        return call

    rows = []
    for label, fn in [("httpx, one client reused (baseline)", reused), ("httpx, a new client per call", fresh),
                      ("HTTP tool via ToolRegistry.call", via(reg)), ("HTTP tool, in-process ASGI", via(asgi))]:
        rows.append((label, await _time(fn, calls)))
    await shared.aclose()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with serve_in_thread(create_app()) as base:
        rows = asyncio.run(run(base, args.calls))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    base_med = statistics.median(rows[0][1])
    if args.json:
        print(json.dumps({label: {"median_ms": statistics.median(t) * 1e3} for label, t in rows}))
        return
    print(f"{args.calls} calls per row after 20 warm-up calls; uvicorn in a thread of this process; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, commit {commit}")
    print("| path | median ms/call | p90 ms/call | vs baseline |")
    print("|---|---|---|---|")
    for label, t in rows:
        med = statistics.median(t)
        p90 = statistics.quantiles(t, n=10)[-1]
        print(f"| {label} | {med * 1e3:.2f} | {p90 * 1e3:.2f} | {med / base_med:.2f}x |")


if __name__ == "__main__":
    main()
