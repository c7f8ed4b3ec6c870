"""The ``run_code`` tool through the real ToolRegistry and a real sandbox, and its entry point."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from keye_agent.errors import ConfigError
from keye_agent.sandboxes._docker import docker_client
from keye_agent.sandboxes.tool import make_run_code
from keye_agent.tools import Tool, ToolRegistry, load_builtin
from keye_agent.types import ToolCall

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def run_code(engine: None) -> Iterator[Tool]:
    t = make_run_code(timeout_s=20)
    yield t
    t.close()


def _call(registry: ToolRegistry, **arguments: object):  # type: ignore[no-untyped-def]
    return registry.dispatch_sync([ToolCall(id="c1", name="run_code", arguments=arguments)])[0]


def test_state_persists_and_output_reaches_the_model(run_code: Tool) -> None:
    reg = ToolRegistry([run_code])
    assert _call(reg, code="total = 40").ok
    r = _call(reg, code="print(total + 2)")
    assert r.ok and r.content.startswith("[python | ok |") and "stdout:\n42" in r.content
    r = _call(reg, code="echo from-bash", language="bash")
    assert "[bash | ok" in r.content and "from-bash" in r.content


def test_errors_come_back_as_tracebacks_to_correct_from(run_code: Tool) -> None:
    r = _call(ToolRegistry([run_code]), code="import json\njson.loads('{bad')")
    assert r.ok  # the tool worked; the code failed, and the content says how
    assert "ERROR (exit code 1): JSONDecodeError" in r.content
    assert 'File "<cell-' in r.content and "json.loads('{bad')" in r.content


def test_saved_plot_comes_back_as_an_image(run_code: Tool) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.savefig('fig.png')\nplt.close()"
    r = _call(ToolRegistry([run_code]), code=code, timeout_s=20)
    assert r.ok and "/workspace/fig.png" in r.content, r.content
    assert len(r.attachments) == 1 and r.attachments[0].mime_type == "image/png"
    assert base64.b64decode(r.attachments[0].data)[:4] == b"\x89PNG"


def test_timeout_is_reported_with_lost_state(run_code: Tool) -> None:
    reg = ToolRegistry([run_code])
    _call(reg, code="v = 1")
    r = _call(reg, code="while True: pass", timeout_s=1)
    assert "TIMED OUT" in r.content and "variables, imports and objects from earlier calls are gone" in r.content
    assert "NameError" in _call(reg, code="v").content


def test_schema_rejects_bad_arguments(run_code: Tool) -> None:
    reg = ToolRegistry([run_code])
    r = _call(reg, code="print(1)", language="ruby")
    assert not r.ok and r.error_type == "ToolValidationError"
    r = _call(reg, code="print(1)", timeout_s=10_000)
    assert not r.ok and r.error_type == "ToolValidationError"
    assert run_code.retries == 0 and run_code.mutates_state and not run_code.needs_approval


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown sandbox option"):
        make_run_code(memroy="1g")
    with pytest.raises(ConfigError, match="cannot read"):
        load_builtin("run_code", memory="lots")


def test_entry_point_resolves_and_runs_in_a_fresh_interpreter(engine: None) -> None:
    code = (
        "from keye_agent.tools import available_builtins, load_builtin\n"
        "assert 'run_code' in available_builtins()\n"
        "t = load_builtin('run_code', timeout_s=15, memory='256m')\n"
        "print(t.fn(code='import numpy as np; print(int(np.arange(7).sum()))').content)\n"
        "t.metadata['session'].close()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "[python | ok |" in out.stdout and "stdout:\n21" in out.stdout


def test_a_lost_sandbox_is_replaced_and_the_model_told(engine: None) -> None:
    t = make_run_code(timeout_s=20)
    reg = ToolRegistry([t])
    try:
        assert _call(reg, code="z = 1").ok
        sb = t.metadata["session"].sandbox
        docker_client().api.remove_container(sb.container_id, force=True)  # killed from outside
        r = _call(reg, code="print(z)")
        assert not r.ok and r.error_type == "ToolExecutionError" and "ended unexpectedly" in r.error
        r = _call(reg, code="print('z' in globals())")
        assert r.ok and "False" in r.content and "the previous sandbox was lost" in r.content
    finally:
        t.close()


def test_yaml_registry_builtin_run_code(engine: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from keye_agent.tools.yaml_registry import load_registry

    f = tmp_path / "tools.yaml"
    f.write_text("version: 1\ntools:\n  - {kind: builtin, builtin: run_code, options: {timeout_s: 10, memory: 256m}}\n")
    reg = load_registry(f)
    t = reg.get("run_code")
    try:
        assert t.metadata["sandbox_config"].memory == 256 * 2**20
        r = _call(reg, code="print(sum(range(5)))")
        assert r.ok and "stdout:\n10" in r.content
    finally:
        t.close()
    f.write_text("version: 1\ntools:\n  - {kind: builtin, builtin: run_code, options: {memroy: 1g}}\n")
    with pytest.raises(ConfigError, match="unknown sandbox option"):
        load_registry(f)


def test_closing_the_registry_removes_the_container(engine: None) -> None:
    """The tool lifecycle: the registry closes run_code (its on_close), which removes its container, once."""
    import docker.errors

    t = make_run_code(timeout_s=20)
    with ToolRegistry([t]) as reg:
        assert _call(reg, code="print(6 * 7)").ok
        cid = t.metadata["session"].sandbox.container_id
        assert cid and docker_client().containers.get(cid).status == "running"
    assert t.closed
    with pytest.raises(docker.errors.NotFound):
        docker_client().containers.get(cid)
    t.close()  # idempotent
