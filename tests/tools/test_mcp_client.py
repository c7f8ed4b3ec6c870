"""Tools from MCP servers: a server written with the official SDK (tests/tools/mcp_sample_server.py) runs as a real
subprocess over stdio and is called through our client, from YAML (``kind: mcp``) and from ``--mcp``. Nothing is
faked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keye_agent.errors import ConfigError, ToolDefinitionError
from keye_agent.tools import ToolRegistry
from keye_agent.tools.mcp_client import MCPServerConfig, add_mcp_server, mcp_tools, server_from_spec
from keye_agent.tools.yaml_registry import load_registry
from keye_agent.types import ToolCall

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVER = HERE / "mcp_sample_server.py"


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(text))
    return p


def entry(extra: str = "") -> str:
    return (f"  - kind: mcp\n    name: sample\n    command: {json.dumps(sys.executable)}\n"
            f"    args: [{json.dumps(str(SERVER))}]\n{extra}")


def call(reg: ToolRegistry, name: str, **arguments):  # type: ignore[no-untyped-def]
    return reg.dispatch_sync([ToolCall(id="c", name=name, arguments=arguments)])[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("mcp")
    f = write(tmp, "tools.yaml", "version: 1\ntools:\n" + entry("    timeout_s: 2\n    max_result_bytes: 10000\n"))
    with load_registry(f) as registry:
        yield registry


def test_tools_of_the_server_become_registry_tools(reg: ToolRegistry) -> None:
    assert "add" in reg and "pixel" in reg and "crash" in reg
    assert reg.get("add").parameters["required"] == ["a", "b"]
    assert reg.get("add").mutates_state is False  # the server marks it read-only
    assert reg.get("pixel").mutates_state is True  # no hint: treated as changing state
    r = call(reg, "add", a=2, b=3)
    assert r.ok and r.content == "5"


def test_arguments_are_validated_before_the_server_sees_them(reg: ToolRegistry) -> None:
    before = int(call(reg, "calls").content)
    r = call(reg, "add", a="two", b=3)
    assert not r.ok and r.error_type == "ToolValidationError" and "arguments.a" in (r.error or "")
    assert int(call(reg, "calls").content) == before + 1  # only the second `calls` reached the server


def test_results_map_to_text_images_structured_content_and_errors(reg: ToolRegistry) -> None:
    r = call(reg, "pixel")
    assert r.ok and r.content == "one red pixel"
    assert len(r.attachments) == 1 and r.attachments[0].mime_type == "image/png" and r.attachments[0].data
    r = call(reg, "weather")
    assert r.ok and json.loads(r.content) == {"city": "Paris", "temp_c": 21}
    r = call(reg, "fail")
    assert not r.ok and r.error_type == "ToolExecutionError" and "the disk is full" in (r.error or "")


def test_invalid_schema_and_unusable_name_are_left_out(reg: ToolRegistry) -> None:
    assert "broken" not in reg and "bad name!" not in reg
    skipped: dict[str, ToolDefinitionError] = {}
    tools = mcp_tools(MCPServerConfig(name="s", command=sys.executable, args=[str(SERVER)]), skipped=skipped)
    try:
        assert set(skipped) == {"broken", "bad name!"}
        assert "not a valid JSON Schema" in str(skipped["broken"])
        assert isinstance(skipped["bad name!"], ToolDefinitionError)
    finally:
        for t in tools:
            t.close()


def test_hang_times_out_and_the_rest_keeps_working(reg: ToolRegistry) -> None:
    r = call(reg, "hang")
    assert not r.ok and r.error_type == "ToolTimeoutError" and "2 s" in (r.error or "")
    assert r.attempts == 1  # an MCP call may change state: never retried blindly
    assert call(reg, "add", a=1, b=1).content == "2"


def test_oversized_result_is_refused(reg: ToolRegistry) -> None:
    r = call(reg, "big", n=20000)
    assert not r.ok and r.error_type == "ToolExecutionError" and "over the limit of 10000" in (r.error or "")
    assert call(reg, "big", n=10).content == "x" * 10


def test_crash_mid_call_then_one_reconnect(tmp_path: Path) -> None:
    # its own registry: the call after the crash starts a new server process inside its timeout, which on a
    # loaded machine takes longer than the shared fixture's 2 s
    f = write(tmp_path, "t.yaml", "version: 1\ntools:\n" + entry("    timeout_s: 60\n"))
    with load_registry(f) as reg:
        first = int(call(reg, "pid").content)
        r = call(reg, "crash")
        assert not r.ok and r.error_type == "ToolExecutionError" and "closed the connection" in (r.error or "")
        again = call(reg, "pid")
        assert again.ok, again.error
        second = int(again.content)  # reconnected: a fresh server process
        assert second != first and not alive(first)
        assert call(reg, "add", a=4, b=4).content == "8"


def test_allow_list(tmp_path: Path) -> None:
    f = write(tmp_path, "t.yaml", "version: 1\ntools:\n" + entry("    tools: [add, pixel]\n    prefix: s.\n"))
    with load_registry(f) as r:
        assert r.names == ["s.add", "s.pixel"]
        res = call(r, "s.crash")
        assert not res.ok and res.error_type == "ToolNotFoundError"
        assert call(r, "s.add", a=1, b=2).content == "3"
    bad = write(tmp_path, "bad.yaml", "version: 1\ntools:\n" + entry("    tools: [add, ad_d]\n"))
    with pytest.raises(ConfigError) as e:
        load_registry(bad)
    assert "has no tool 'ad_d'" in str(e.value) and e.value.line == 7 and "add" in str(e.value)
    broken = write(tmp_path, "broken.yaml", "version: 1\ntools:\n" + entry("    tools: [broken]\n"))
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        load_registry(broken)


def test_name_collision_is_a_config_error_and_stops_the_server(tmp_path: Path) -> None:
    f = write(tmp_path, "c.yaml", "version: 1\ntools:\n  - {kind: python, function: 'keye_agent.store_api.data:seed', "
                                  "name: add, description: Seed.}\n" + entry())
    with pytest.raises(ConfigError, match="duplicate tool name 'add'") as e:
        load_registry(f)
    assert e.value.line == 5 and "first defined at" in str(e.value)  # points at the mcp entry
    registry = ToolRegistry()
    registry.register(lambda_add())
    with pytest.raises(ConfigError, match="already holds one") as e2:
        add_mcp_server(registry, f"{sys.executable} {SERVER}")
    assert "NAME=" in str(e2.value)
    tools = add_mcp_server(registry, f"s={sys.executable} {SERVER}")  # a name prefixes the tools: no clash
    with registry:
        pid = int(call(registry, "s.pid").content)
        assert call(registry, "s.add", a=1, b=1).content == "2" and call(registry, "add", a=1, b=1).content == "local"
    assert tools[0].closed and not alive(pid)


def lambda_add():  # type: ignore[no-untyped-def]
    from keye_agent.tools import tool

    @tool
    def add(a: int, b: int) -> str:
        """A local add that collides with the server's.

        Args:
            a: first
            b: second
        """
        return "local"

    return add


def test_network_policy_applies_to_mcp_urls(tmp_path: Path) -> None:
    f = write(tmp_path, "u.yaml", "version: 1\ntools:\n  - {kind: mcp, url: 'http://127.0.0.1:9/mcp'}\n")
    with pytest.raises(ConfigError, match="loopback") as e:
        load_registry(f)
    assert e.value.line == 3
    both = write(tmp_path, "b.yaml", "version: 1\ntools:\n  - {kind: mcp, url: 'http://x.org/mcp', command: x}\n")
    with pytest.raises(ConfigError, match="exactly one of 'command'"):
        load_registry(both)


def test_server_from_spec() -> None:
    assert server_from_spec("http://127.0.0.1:8000/mcp").url == "http://127.0.0.1:8000/mcp"
    c = server_from_spec("fs=npx -y server-fs '/tmp/a b'")
    assert (c.prefix, c.command, c.args) == ("fs.", "npx", ["-y", "server-fs", "/tmp/a b"])
    with pytest.raises(ConfigError):
        server_from_spec("  ")


def test_closing_the_registry_stops_the_server(tmp_path: Path) -> None:
    f = write(tmp_path, "t.yaml", "version: 1\ntools:\n" + entry("    tools: [pid]\n"))
    registry = load_registry(f)
    pid = int(call(registry, "pid").content)
    assert alive(pid)
    registry.close()
    assert not alive(pid)


def test_no_server_outlives_the_cli_run(tmp_path: Path) -> None:
    """``keye-agent run --mcp`` with a scripted model (the model is the one part replayed): the model calls the
    server's ``pid`` tool, and once the command has exited that process is gone."""
    script = tmp_path / "turns.jsonl"
    script.write_text('{"tool_calls": [{"id": "1", "name": "pid", "arguments": {}}]}\n{"text": "done"}\n')
    save = tmp_path / "run.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "keye_agent.cli.main", "run", "what is the pid", "--model",
                           f"scripted:{script}", "--mcp", f"{sys.executable} {SERVER}", "--json", "--save", str(save), "--yes"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["final_answer"] == "done"
    steps = [json.loads(line) for line in save.read_text().splitlines()]
    results = [r for s in steps if s["type"] == "step" for r in s["tool_results"]]
    assert len(results) == 1 and results[0]["ok"], results
    assert not alive(int(results[0]["content"]))
