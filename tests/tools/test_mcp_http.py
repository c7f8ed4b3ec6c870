"""The MCP client over streamable HTTP against a real server written with the official SDK (a subprocess on a
loopback port, tests/tools/mcp_sample_http_server.py): headers from the environment reach it and never come back
in the clear, a refused credential is named as such, a server that restarts is reached again; and `keye-agent
tools list --mcp` lists a server's tools. Nothing is faked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keye_agent.errors import KeyeAgentError
from keye_agent.tools import ToolRegistry
from keye_agent.tools.mcp_client import MCPServerConfig, mcp_tools
from keye_agent.tools.yaml_registry import load_registry
from keye_agent.types import ToolCall

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TOKEN = "tok-7f3a9c2e51b8d604"


class SampleServer:
    """The sample HTTP server as a subprocess on one fixed port, so it can be stopped and started again there."""

    def __init__(self, tmp: Path, token: str) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = tmp / "server.log"
        self.env = {**os.environ, "EXPECT_TOKEN": token}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(HERE / "mcp_sample_http_server.py"), str(self.port)],
                                         env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the sample server did not listen: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SampleServer]:
    srv = SampleServer(tmp_path, TOKEN)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def call(reg: ToolRegistry, name: str):  # type: ignore[no-untyped-def]
    return reg.dispatch_sync([ToolCall(id="1", name=name, arguments={})])[0]


def test_a_header_from_the_environment_reaches_the_server_and_is_hidden_in_results(
        server: SampleServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_MCP_TOKEN", TOKEN)
    f = tmp_path / "tools.yaml"
    f.write_text(textwrap.dedent(f"""\
        version: 1
        network: {{allow_loopback: true}}
        tools:
          - kind: mcp
            name: sample
            url: {server.url}
            headers: {{Authorization: "Bearer ${{SAMPLE_MCP_TOKEN}}"}}
        """))
    with load_registry(f) as reg:  # the server answers 401 to any request without the header: listing proves it
        assert reg.names == ["pid", "auth_seen"]
        r = call(reg, "auth_seen")
        assert r.ok and r.content == "Bearer ***"  # the server echoed what it got; our side hid the token
        assert TOKEN not in json.dumps(r.model_dump() if hasattr(r, "model_dump") else vars(r), default=str)


def test_a_refused_credential_is_named_and_not_shown(server: SampleServer) -> None:
    wrong = "tok-wrong-0123456789"
    with pytest.raises(KeyeAgentError) as info:
        mcp_tools(MCPServerConfig(name="sample", url=server.url, headers={"Authorization": f"Bearer {wrong}"}))
    text = str(info.value)
    assert "HTTP 401" in text and "credentials" in text and wrong not in text


def test_a_restarted_server_is_reached_again(server: SampleServer) -> None:
    cfg = MCPServerConfig(name="sample", url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout_s=10)
    with ToolRegistry(mcp_tools(cfg)) as reg:
        first = call(reg, "pid")
        assert first.ok
        server.stop()
        down = call(reg, "pid")
        assert not down.ok and "sample" in (down.error or "")  # the call that saw the drop fails, naming the server
        server.start()
        again = call(reg, "pid")
        assert again.ok and again.content != first.content  # a fresh server process answered
        assert call(reg, "pid").content == again.content


def test_tools_list_takes_mcp_servers() -> None:
    cmd = f"s={sys.executable} {HERE / 'mcp_sample_server.py'}"
    proc = subprocess.run([sys.executable, "-m", "keye_agent.cli.main", "tools", "list", "--json", "--mcp", cmd],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {s["function"]["name"] for s in json.loads(proc.stdout)}
    assert {"s.add", "s.pixel", "s.pid"} <= names and "s.broken" not in names
