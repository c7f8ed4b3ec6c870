"""Tool lifecycle: ``Tool.close``/``aclose`` run a tool's ``on_close`` once; ``ToolRegistry.close`` closes them all.

The sandbox's own use of it (a container removed when its registry closes) is tested in
tests/sandboxes/test_tool.py against the real Docker engine.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keye_agent.tools import Tool, ToolRegistry


def _tool(name: str, on_close: object = None) -> Tool:
    return Tool(name=name, description="T.", parameters={"type": "object"}, fn=lambda: name,
                on_close=on_close)  # type: ignore[arg-type]


def test_close_runs_a_sync_closer_once() -> None:
    closed: list[str] = []
    t = _tool("a", lambda: closed.append("a"))
    assert not t.closed
    t.close()
    t.close()
    asyncio.run(t.aclose())
    assert closed == ["a"] and t.closed


def test_an_async_closer_runs_from_sync_and_async_code() -> None:
    closed: list[str] = []

    async def release() -> None:
        await asyncio.sleep(0)
        closed.append("released")

    _tool("a", release).close()
    asyncio.run(_tool("b", release).aclose())
    assert closed == ["released", "released"]


def test_sync_close_of_an_async_closer_inside_a_loop_says_to_await() -> None:
    closed: list[str] = []

    async def release() -> None:
        closed.append("released")

    t = _tool("a", release)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="await tool.aclose"):
            t.close()
        assert not t.closed  # nothing was released, so it can still be closed properly
        await t.aclose()

    asyncio.run(main())
    assert closed == ["released"] and t.closed


def test_a_tool_without_a_resource_closes_as_a_no_op() -> None:
    t = _tool("plain")
    t.close()
    assert t.closed and t() == "plain"  # closing releases resources; the function itself still works


def test_the_registry_closes_every_tool_even_when_one_fails() -> None:
    closed: list[str] = []

    def broken() -> None:
        raise OSError("socket already gone")

    reg = ToolRegistry([_tool("a", lambda: closed.append("a")), _tool("b", broken), _tool("c", lambda: closed.append("c"))])
    with pytest.raises(OSError, match="already gone"):
        reg.close()
    assert closed == ["a", "c"]
    reg.close()  # each tool is closed once: nothing runs, nothing raises
    assert closed == ["a", "c"]


def test_the_registry_as_context_managers() -> None:
    closed: list[str] = []

    async def aclose_b() -> None:
        closed.append("b")

    with ToolRegistry([_tool("a", lambda: closed.append("a"))]):
        pass

    async def main() -> None:
        async with ToolRegistry([_tool("b", aclose_b), _tool("c", lambda: closed.append("c"))]) as reg:
            assert len(reg) == 2

    asyncio.run(main())
    assert sorted(closed) == ["a", "b", "c"]


def test_the_readme_example_runs_as_written() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [block] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "on_close=" in b]
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["value True", "False True"]
