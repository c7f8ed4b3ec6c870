"""Owner labels, the reaper, owner death, and the warm pool, on the real engine.

Second owners are real processes (``python -c`` children) that start real sandboxes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from keye_agent.errors import SandboxError
from keye_agent.sandboxes import DockerSandbox, SandboxPool, default_image, reap_orphans
from keye_agent.sandboxes._docker import docker_client
from keye_agent.sandboxes.owner import L_PID, L_START, list_sandboxes, owner_labels, owner_state

pytestmark = pytest.mark.docker

OWNER = textwrap.dedent(
    """
    import sys, time
    from keye_agent.sandboxes import DockerSandbox
    sb = DockerSandbox(exit_on_disconnect={exit_on_disconnect}, reap_on_start=False).start()
    print(sb.name, flush=True)
    {then}
    """
)


def _spawn_owner(then: str, exit_on_disconnect: bool = True) -> tuple[subprocess.Popen[str], str]:
    code = OWNER.format(then=then, exit_on_disconnect=exit_on_disconnect)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    name = proc.stdout.readline().strip()
    assert name.startswith("keye-sbx-"), f"second owner failed to start a sandbox (exit {proc.poll()})"
    return proc, name


def _names() -> set[str]:
    return {c.name for c in list_sandboxes()}


def _wait_gone(name: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name not in _names():
            return True
        time.sleep(0.1)
    return False


def test_containers_carry_owner_labels(engine: None) -> None:
    with DockerSandbox() as sb:
        labels = docker_client().api.inspect_container(sb.name)["Config"]["Labels"]
    assert labels["keye.sandbox"] == "1" and labels[L_PID] == str(os.getpid())
    assert labels == {**labels, **owner_labels()}
    assert owner_state(labels) == "alive"
    assert owner_state({**labels, L_START: "1"}) == "gone"  # same pid, other start time: a recycled pid


def test_reaper_spares_a_live_second_owner_and_removes_a_dead_ones(engine: None) -> None:
    # The live owner waits for a line on stdin, then uses its sandbox and reports what it printed.
    live, live_name = _spawn_owner(
        "sys.stdin.readline()\nprint(sb.run('print(7)').stdout.strip(), flush=True)\nsys.stdin.readline()"
    )
    dead, dead_name = _spawn_owner("time.sleep(3600)", exit_on_disconnect=False)
    assert live.stdin is not None and live.stdout is not None
    try:
        dead.kill()  # kill -9: no cleanup code runs; its container keeps running (exit_on_disconnect off)
        dead.wait()
        assert dead_name in _names()
        removed = {c.name for c in reap_orphans()}
        assert dead_name in removed and live_name not in removed
        assert dead_name not in _names() and live_name in _names()
        live.stdin.write("go\n")
        live.stdin.flush()
        assert live.stdout.readline().strip() == "7"  # the live owner's sandbox still works after the reaper ran
    finally:
        dead.kill()
        live.stdin.close()
        live.wait(timeout=30)
    assert _wait_gone(live_name)  # its owner exited: the container ended with it


def test_kill_9_mid_run_then_next_start_reaps_the_orphan(engine: None) -> None:
    proc, name = _spawn_owner(
        "print(sb.run('import time; time.sleep(3600)', timeout=3600), flush=True)", exit_on_disconnect=False
    )
    time.sleep(1.0)  # the owner is now blocked in run(), its kernel sleeping
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert name in _names()  # orphaned: nothing removed it yet
    with DockerSandbox() as sb:  # reap_on_start is the default
        assert name not in _names()
        assert sb.run("print('fresh')").stdout == "fresh\n"


def test_owner_death_ends_its_containers_by_default(engine: None) -> None:
    proc, name = _spawn_owner("print(sb.run('import time; time.sleep(3600)', timeout=3600), flush=True)")
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_gone(name), "the engine closed stdin, so PID 1 should have exited and the container gone"


def test_pool_hands_out_ready_sandboxes_once(engine: None) -> None:
    with SandboxPool(size=2) as pool:
        pool.wait_ready(timeout=60)
        assert pool.ready == 2
        with pool.sandbox() as a, pool.sandbox() as b:
            assert a.started and b.started and a.name != b.name
            a.run("x = 'a'")
            assert b.run("print('x' in globals())").stdout == "False\n"
        assert a.name not in _names() and b.name not in _names()  # used once, then removed
        pool.wait_ready(timeout=60)  # refilled in the background
        assert pool.ready == 2
        waiting = set()
        with pool._cond:
            waiting = {sb.name for sb in pool._ready}
    assert waiting and not (waiting & _names())  # closing the pool removes the waiting ones


def test_pool_reports_start_failures(engine: None) -> None:
    with SandboxPool(size=1, image="keye-sandbox:does-not-exist") as pool:
        with pytest.raises(SandboxError, match="not found"):
            pool.wait_ready(timeout=60)
        with pytest.raises(SandboxError, match="keye-agent sandbox build"):
            pool.acquire()


def test_current_image_is_the_recipe_tag(engine: None) -> None:
    assert default_image().startswith("keye-sandbox:") and len(default_image().split(":")[1]) == 12


def test_closing_a_pool_while_it_starts_sandboxes_leaves_no_container(engine: None) -> None:
    """close() returns only after the sandboxes still starting have come up and been removed."""
    def mine() -> set[str]:
        return {c.name for c in list_sandboxes() if c.owner_pid == os.getpid()}

    before = mine()
    pool = SandboxPool(size=3)
    time.sleep(0.3)  # the filler has started its sandboxes; none is ready yet (a cold start takes ~0.5 s)
    pool.close()
    assert mine() <= before
