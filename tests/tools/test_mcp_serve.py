"""`keye-agent mcp serve`: our YAML registry served over MCP, called by the official SDK's client over stdio, and by
our own client over streamable HTTP (a round trip). The tools are the example store registry against the real
store API on a loopback port; each server is a real subprocess. Nothing is faked."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keye_agent.tau.domains.store.api import create_app, serve_in_thread
from keye_agent.tools.yaml_registry import load_registry
from keye_agent.types import ToolCall

ROOT = Path(__file__).resolve().parents[2]
STORE_YAML = ROOT / "examples" / "store.yaml"


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    with serve_in_thread(create_app()) as base:
        yield base


def serve_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "keye_agent.cli.main", "mcp", "serve", "--tools", str(STORE_YAML), *extra]


def child_env(store: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "STORE_API_URL": store}


async def sdk_session(store: str, *extra: str):  # type: ignore[no-untyped-def]
    from mcp import Client, StdioServerParameters

    cmd = serve_cmd(*extra)
    params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=child_env(store))
    return Client(params, cache=None)


def test_sdk_client_over_stdio(store: str) -> None:
    async def go() -> None:
        async with await sdk_session(store) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert {"get_store", "find_stores", "create_order"} <= set(listed)
            assert listed["get_store"].input_schema["required"] == ["store_id"]
            assert listed["create_order"].annotations.destructive_hint is True
            assert listed["get_store"].annotations.read_only_hint is True

            ok = await client.call_tool("get_store", {"store_id": "s1"})
            assert not ok.is_error and json.loads(ok.content[0].text)["id"] == "s1"

            bad = await client.call_tool("get_store", {"store_id": 7})
            assert bad.is_error and "ToolValidationError" in bad.content[0].text
            assert "store_id" in bad.content[0].text

            refused = await client.call_tool("cancel_order", {"order_id": "o-1"})
            assert refused.is_error and "--allow-mutating" in refused.content[0].text

            unknown = await client.call_tool("get_stor", {})
            assert unknown.is_error and "get_store" in unknown.content[0].text  # "did you mean"

    asyncio.run(go())


@pytest.fixture(scope="module")
def http_server(store: str) -> Iterator[str]:
    proc = subprocess.Popen(serve_cmd("--transport", "http", "--port", "0", "--allow-mutating"), env=child_env(store),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            if " at http://" in line:
                url = line.rsplit(" at ", 1)[1].strip()
        assert url and url.startswith("http://127.0.0.1:"), "the server did not say where it listens"
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_round_trip_our_client_to_our_server(store: str, http_server: str, tmp_path: Path) -> None:
    f = tmp_path / "remote.yaml"
    f.write_text(textwrap.dedent(f"""\
        version: 1
        network: {{allow_loopback: true}}
        tools:
          - kind: mcp
            name: store
            url: {http_server}
            tools: [get_store, cancel_order]
            prefix: remote.
        """))
    direct = httpx.get(f"{store}/stores/s2").json()["store"]
    with load_registry(f) as reg:
        assert reg.names == ["remote.get_store", "remote.cancel_order"]
        assert reg.get("remote.cancel_order").mutates_state  # the destructive hint crossed the wire
        r = reg.dispatch_sync([ToolCall(id="1", name="remote.get_store", arguments={"store_id": "s2"})])[0]
        assert r.ok and json.loads(r.content) == direct
        r = reg.dispatch_sync([ToolCall(id="2", name="remote.get_store", arguments={"store_id": "nope"})])[0]
        assert not r.ok and "nope" in (r.error or "")  # the store's 404, passed on as an error result
        # served with --allow-mutating: the call runs (and the store answers that there is no such order)
        r = reg.dispatch_sync([ToolCall(id="3", name="remote.cancel_order", arguments={"order_id": "o-404"})])[0]
        assert not r.ok and "o-404" in (r.error or "") and "allow-mutating" not in (r.error or "")


def test_readme_mcp_example_runs_as_written() -> None:
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [block] = [b for b in blocks if "add_mcp_server" in b]
    proc = subprocess.run([sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "['store.get_store'] s1"
