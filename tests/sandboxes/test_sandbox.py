"""DockerSandbox on the real engine: state, output, files, shell, timeouts, limits, concurrency."""

from __future__ import annotations

import atexit
import os
import threading

import pytest

from keye_agent.errors import SandboxError
from keye_agent.sandboxes import DockerSandbox, SandboxConfig
from keye_agent.sandboxes.owner import list_sandboxes

pytestmark = pytest.mark.docker


def my_containers() -> list[str]:
    return [c.name for c in list_sandboxes() if c.owner_pid == os.getpid()]


def test_globals_and_imports_persist_between_calls(shared_sandbox: DockerSandbox) -> None:
    assert shared_sandbox.run("import math\nx = 21").ok
    r = shared_sandbox.run("y = x * 2\nprint(math.sqrt(y * y))")
    assert r.ok and r.stdout == "42.0\n" and r.exit_code == 0 and r.stderr == ""


def test_last_expression_is_echoed(shared_sandbox: DockerSandbox) -> None:
    r = shared_sandbox.run("a = [1, 2]\na + [3]")
    assert r.stdout == "[1, 2, 3]\n"
    assert shared_sandbox.run("None").stdout == ""


def test_exception_gives_traceback_of_the_cell_only(shared_sandbox: DockerSandbox) -> None:
    r = shared_sandbox.run("def f(n):\n    return 1 / n\nprint('before')\nf(0)")
    assert r.exit_code == 1 and not r.ok
    assert r.stdout == "before\n"
    assert r.error == "ZeroDivisionError: division by zero"
    assert 'File "<cell-' in r.stderr and "line 4" in r.stderr and "return 1 / n" in r.stderr
    assert "<string>" not in r.stderr  # no frames of the kernel itself
    assert r.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


def test_syntax_error_and_system_exit(shared_sandbox: DockerSandbox) -> None:
    r = shared_sandbox.run("def (:")
    assert r.exit_code == 1 and r.error.startswith("SyntaxError") and "SyntaxError" in r.stderr
    r = shared_sandbox.run("import sys\nsys.exit(3)")
    assert r.exit_code == 3 and not r.state_lost
    assert shared_sandbox.run("print('kernel still here')").stdout == "kernel still here\n"


def test_output_of_subprocesses_and_c_level_writes_is_captured(shared_sandbox: DockerSandbox) -> None:
    r = shared_sandbox.run("import os, subprocess\nos.write(1, b'raw\\n')\n_ = subprocess.run(['echo', 'child'])")
    assert r.stdout == "raw\nchild\n"
    r = shared_sandbox.run("import sys\nsys.stderr.write('warn\\n')")
    assert r.stderr == "warn\n"


def test_files_persist_and_are_reported(shared_sandbox: DockerSandbox) -> None:
    r = shared_sandbox.run("open('out.txt', 'w').write('hello')\nimport os; os.makedirs('d', exist_ok=True)")
    assert r.files == ["/workspace/out.txt"]
    assert shared_sandbox.download("out.txt") == b"hello"
    assert shared_sandbox.run("print(open('/workspace/out.txt').read())").stdout == "hello\n"
    path = shared_sandbox.upload("d/in.csv", "a,b\n1,2\n")
    assert path == "/workspace/d/in.csv"
    r = shared_sandbox.run("import pandas as pd\ndf = pd.read_csv('d/in.csv')\nprint(int(df.a.sum() + df.b.sum()))")
    assert r.stdout == "3\n", r.stderr
    assert shared_sandbox.run("print(1)").files == []  # nothing changed


def test_transfer_paths_are_confined(shared_sandbox: DockerSandbox) -> None:
    with pytest.raises(SandboxError, match="outside /workspace"):
        shared_sandbox.upload("../etc/passwd", "x")
    with pytest.raises(SandboxError, match="outside /workspace"):
        shared_sandbox.download("/etc/passwd")
    with pytest.raises(SandboxError, match="download of /workspace/missing failed"):
        shared_sandbox.download("missing")


def test_shell_runs_in_workspace(shared_sandbox: DockerSandbox) -> None:
    shared_sandbox.upload("s.txt", "x\ny\n")
    r = shared_sandbox.run_shell("pwd; wc -l < s.txt; id -u; echo oops >&2; exit 4")
    assert r.stdout == "/workspace\n2\n1000\n" and r.stderr == "oops\n" and r.exit_code == 4
    assert shared_sandbox.run("echo $((6*7))", language="bash").stdout == "42\n"
    with pytest.raises(SandboxError, match="unsupported language"):
        shared_sandbox.run("puts 1", language="ruby")


def test_numpy_pandas_matplotlib_work(shared_sandbox: DockerSandbox) -> None:
    code = (
        "import numpy as np, pandas as pd, matplotlib.pyplot as plt\n"
        "df = pd.DataFrame({'x': np.arange(5), 'y': np.arange(5) ** 2})\n"
        "plt.plot(df.x, df.y); plt.savefig('plot.png')\n"
        "print(df.y.sum())"
    )
    r = shared_sandbox.run(code, timeout=60)
    assert r.stdout == "30\n", r.stderr
    assert r.files == ["/workspace/plot.png"]
    assert shared_sandbox.download("plot.png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeout_restarts_kernel_and_says_state_was_lost(fresh_sandbox: DockerSandbox) -> None:
    fresh_sandbox.run("keep = 1\nopen('kept.txt', 'w').write('still here')")
    r = fresh_sandbox.run("import time\nprint('started', flush=True)\ntime.sleep(600)", timeout=1)
    assert r.timed_out and r.state_lost and r.exit_code == 124 and not r.ok
    assert r.stdout == "started\n"  # output before the timeout is kept
    assert "timed out" in r.error and any("restarted" in n for n in r.notes)
    r = fresh_sandbox.run("print('keep' in globals(), open('kept.txt').read())")
    assert r.stdout == "False still here\n" and not r.state_lost


def test_kernel_exit_between_calls_is_reported(fresh_sandbox: DockerSandbox) -> None:
    r = fresh_sandbox.run("v = 5\nimport os\nos._exit(9)")
    assert r.state_lost and r.exit_code == 9 and "exited with status 9" in r.error
    r = fresh_sandbox.run("print('v' in globals())")
    assert r.stdout == "False\n" and r.ok


def test_output_cap_keeps_head_and_tail(engine: None) -> None:
    with DockerSandbox(max_output_bytes="4k") as sb:
        r = sb.run("print('HEAD'); print('x' * 100000); print('TAIL')")
        assert r.stdout_truncated and not r.stderr_truncated
        assert r.stdout.startswith("HEAD\n") and r.stdout.endswith("TAIL\n")
        assert "bytes of output omitted" in r.stdout and len(r.stdout) < 4096 + 100
        assert sb.run("print('small')").stdout == "small\n"  # the cap is per call


def test_limits_are_verified_from_inside(shared_sandbox: DockerSandbox) -> None:
    f = shared_sandbox.facts
    cfg = shared_sandbox.config
    assert (f["uid"], f["gid"]) == (1000, 1000)
    assert int(f["cap_eff"], 16) == 0 and int(f["cap_bnd"], 16) == 0 and f["no_new_privs"] == "1"
    assert not f["root_writable"] and f["net_ifaces"] == ["lo"] and not f["net_route"]
    assert int(f["mem_limit"]) == cfg.memory and int(f["pids_max"]) == cfg.pids_limit


def test_refuses_to_start_when_a_limit_did_not_take_effect(engine: None) -> None:
    """A real container started without its pids limit (as an engine that ignores the flag would start it):
    the check inside sees ``pids.max = max`` and start() refuses, removing the container."""

    class IgnoresPids(DockerSandbox):
        def _host_config(self, client):  # type: ignore[no-untyped-def]
            hc = super()._host_config(client)
            hc.pop("PidsLimit", None)
            return hc

    sb = IgnoresPids()
    with pytest.raises(SandboxError, match="pids limit is max, expected 128"):
        sb.start()
    assert sb.name not in my_containers()


def test_settings_are_configurable(engine: None) -> None:
    cfg = SandboxConfig(memory="256m", pids_limit=64, cpus=0.5, tmp_size="16m", env={"FOO": "bar"})
    with DockerSandbox(cfg) as sb:
        f = sb.facts
        assert int(f["mem_limit"]) == 256 * 2**20 and int(f["memsw_limit"]) == 256 * 2**20
        assert int(f["pids_max"]) == 64 and int(f["cpu_quota"]) == 50_000 and f["fs_size"]["/tmp"] == 16 * 2**20
        assert sb.run("import os; print(os.environ['FOO'])").stdout == "bar\n"


def test_concurrent_sandboxes_keep_separate_state(engine: None) -> None:
    boxes = [DockerSandbox() for _ in range(3)]
    errors: list[BaseException] = []

    def work(i: int, sb: DockerSandbox) -> None:
        try:
            sb.start()
            sb.run(f"me = {i}")
            for _ in range(20):
                r = sb.run("print(me)")
                assert r.stdout == f"{i}\n"
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, sb)) for i, sb in enumerate(boxes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {sb.name for sb in boxes}
    for sb in boxes:
        sb.close()
    assert not errors, errors
    assert names.isdisjoint(my_containers())


def test_close_removes_container_and_further_calls_fail(engine: None) -> None:
    sb = DockerSandbox().start()
    name = sb.name
    assert name in my_containers()
    sb.close()
    sb.close()
    assert name not in my_containers()
    with pytest.raises(SandboxError, match="closed"):
        sb.run("print(1)")


def test_a_forked_child_exiting_leaves_the_parents_sandbox_alone(fresh_sandbox: DockerSandbox) -> None:
    pid = os.fork()
    if pid == 0:  # the child runs the exit handlers it inherited (the finalizers among them), then leaves
        try:
            atexit._run_exitfuncs()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert fresh_sandbox.run("print('still here')").stdout == "still here\n"


def test_chained_exceptions_keep_their_cause(shared_sandbox: DockerSandbox) -> None:
    r = shared_sandbox.run("try:\n    {}['k']\nexcept KeyError as e:\n    raise ValueError('bad input') from e")
    assert r.error == "ValueError: bad input"
    assert "KeyError: 'k'" in r.stderr and "direct cause" in r.stderr and "<string>" not in r.stderr
    r = shared_sandbox.run("x = (")
    assert r.stderr.startswith('  File "<cell-') and "Traceback" not in r.stderr  # no frames of the parser
