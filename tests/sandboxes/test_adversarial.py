"""Hostile code in a real sandbox: each attack is contained, gives a clear result, leaves the sandbox usable (or
restarted), and leaves the host and a neighbouring sandbox unaffected. No container outlives its test."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from keye_agent.sandboxes import DockerSandbox, ExecResult
from keye_agent.sandboxes.owner import list_sandboxes

pytestmark = pytest.mark.docker


def my_containers() -> list[str]:
    return [c.name for c in list_sandboxes() if c.owner_pid == os.getpid()]


@pytest.fixture(scope="module")
def neighbour(engine: None) -> Iterator[DockerSandbox]:
    """A second sandbox whose state must survive every attack on the first."""
    with DockerSandbox() as sb:
        sb.run("canary = 'alive'")
        yield sb


@pytest.fixture
def victim(engine: None, neighbour: DockerSandbox) -> Iterator[DockerSandbox]:
    sb = DockerSandbox().start()
    yield sb
    name = sb.name
    sb.close()
    assert name not in my_containers()
    r = neighbour.run("print(canary)")
    assert r.stdout == "alive\n", f"the neighbouring sandbox was affected: {r}"


def _usable(sb: DockerSandbox) -> None:
    r = sb.run("print(6 * 7)")
    assert r.ok and r.stdout == "42\n", r


def test_fork_bomb_hits_pids_limit_and_is_cleaned_up(victim: DockerSandbox) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    r = victim.run(code, timeout=3)
    assert r.timed_out and r.state_lost
    events = victim.run_shell("cat /sys/fs/cgroup/pids/pids.events 2>/dev/null || cat /sys/fs/cgroup/pids.events")
    assert int(events.stdout.split()[1]) > 0  # forks were refused at the pids limit
    current = victim.run_shell("cat /sys/fs/cgroup/pids/pids.current 2>/dev/null || cat /sys/fs/cgroup/pids.current")
    assert int(current.stdout) <= 6, current.stdout  # PID 1, the new kernel, this shell: the bomb is gone
    _usable(victim)
    assert subprocess.run(["true"], check=False).returncode == 0  # the host can still fork


def test_memory_bomb_is_killed_by_the_memory_limit(victim: DockerSandbox) -> None:
    r = victim.run("x = 1\nblocks = []\nwhile True:\n    blocks.append(bytearray(16 * 2**20))", timeout=30)
    assert r.oom_killed and r.state_lost and r.exit_code == 137 and not r.timed_out
    assert "out-of-memory" in r.error
    _usable(victim)


def test_infinite_loop_times_out(victim: DockerSandbox) -> None:
    r = victim.run("while True:\n    pass", timeout=1)
    assert r.timed_out and r.exit_code == 124
    _usable(victim)


def test_busy_loop_on_all_cores_is_throttled_to_the_quota(engine: None, neighbour: DockerSandbox) -> None:
    """A quarter-core quota, so the spinners exceed it even when the shared test machine is busy."""
    stat = "grep nr_throttled /sys/fs/cgroup/cpu/cpu.stat || grep nr_throttled /sys/fs/cgroup/cpu.stat"
    code = (
        "import multiprocessing as mp\n"
        "def spin():\n    while True: pass\n"
        "procs = [mp.Process(target=spin) for _ in range(mp.cpu_count() + 1)]\n"
        "[p.start() for p in procs]\n"
        "[p.join() for p in procs]"
    )
    with DockerSandbox(cpus=0.25) as victim:
        before = int(victim.run_shell(stat).stdout.split()[1])
        result: dict[str, ExecResult] = {}
        t = threading.Thread(target=lambda: result.setdefault("r", victim.run(code, timeout=3)))
        t.start()
        assert neighbour.run("print(canary)").stdout == "alive\n"  # answers while the victim spins
        t.join()
        r = result["r"]
        assert r.timed_out and r.state_lost
        assert int(victim.run_shell(stat).stdout.split()[1]) > before  # the CFS quota held the spinners back
        assert "python3" not in victim.run_shell("ps -eo pid=,comm= | awk '$1 > 1'").stdout.replace("python3", "", 1)
        _usable(victim)
        name = victim.name
    assert name not in my_containers()


def test_root_filesystem_is_read_only(victim: DockerSandbox) -> None:
    for path in ("/etc/evil", "/usr/lib/python3/dist-packages/evil.py", "/evil"):
        r = victim.run(f"open({path!r}, 'w').write('x')")
        assert r.exit_code == 1 and ("Read-only file system" in r.error or "Permission denied" in r.error), r
    r = victim.run_shell("touch /bin/evil; echo $?")
    assert r.stdout.strip() != "0"
    assert victim.run_shell("ls /evil /etc/evil 2>&1 | grep -c 'No such file'").stdout.strip() == "2"


def test_filling_tmp_stops_at_its_size(victim: DockerSandbox) -> None:
    code = (
        "n = 0\n"
        "try:\n"
        "    with open('/tmp/fill', 'wb') as f:\n"
        "        while True:\n"
        "            f.write(b'x' * 2**20); f.flush(); n += 1\n"
        "except OSError as e:\n"
        "    print(n, e.strerror)"
    )
    r = victim.run(code, timeout=20)
    mib, _, why = r.stdout.strip().partition(" ")
    assert why == "No space left on device" and int(mib) <= 64, r
    _usable(victim)
    assert victim.run_shell("rm /tmp/fill && echo freed").stdout == "freed\n"


def test_host_files_are_out_of_reach(victim: DockerSandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "host-secret.txt"
    secret.write_text("TOP-SECRET-HOST-DATA")
    code = (
        "import os, glob\n"
        f"print(os.path.exists({str(secret)!r}))\n"
        "print(os.path.exists('/var/run/docker.sock'), os.path.exists('/run/docker.sock'))\n"
        "print(os.listdir('/proc/1/root') if os.access('/proc/1/root', os.R_OK) else 'no-access')\n"
    )
    r = victim.run(code)
    lines = r.stdout.splitlines()
    assert lines[0] == "False" and lines[1] == "False False" and lines[2] == "no-access", r
    grep = victim.run_shell(
        "grep -rsl TOP-SECRET-HOST-DATA / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr | head -1", timeout=20
    )
    assert "TOP-SECRET" not in grep.stdout
    assert victim.run("print(open('/etc/hostname').read().strip() == os.uname().nodename)").stdout == "True\n"


def test_network_is_unreachable(victim: DockerSandbox) -> None:
    code = (
        "import socket\n"
        "for target in [('1.1.1.1', 53), ('172.17.0.1', 2375), ('10.0.0.1', 80)]:\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    try:\n"
        "        s.connect(target); print('CONNECTED', target)\n"
        "    except OSError as e:\n"
        "        print(type(e).__name__, e.errno)\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 80); print('RESOLVED')\n"
        "except OSError as e:\n"
        "    print('gaierror')\n"
    )
    r = victim.run(code, timeout=15)
    assert "CONNECTED" not in r.stdout and "RESOLVED" not in r.stdout, r
    assert r.stdout.count("OSError 101") == 3 and "gaierror" in r.stdout  # ENETUNREACH: no route at all


def test_huge_output_is_capped(victim: DockerSandbox) -> None:
    r = victim.run("import sys\nfor _ in range(200):\n    sys.stdout.write('y' * 2**20)", timeout=30)
    assert r.ok and r.stdout_truncated
    assert len(r.stdout.encode()) <= victim.config.max_output_bytes + 100
    assert "bytes of output omitted" in r.stdout
    _usable(victim)


def test_killing_pid_1_from_inside_does_nothing(victim: DockerSandbox) -> None:
    victim.run("kept = 'yes'")
    code = (
        "import os, signal\n"
        "for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
        "    os.kill(1, sig)\n"  # allowed (same uid), and ignored: PID 1 of a namespace has no default actions
        "try:\n"
        "    os.kill(-1, signal.SIGKILL)\n"  # every process it may signal except PID 1 and itself: none
        "except ProcessLookupError:\n"
        "    print('nobody else to kill')\n"
    )
    r = victim.run(code)
    assert r.ok and r.stdout == "nobody else to kill\n", r
    assert victim.run("print(kept)").stdout == "yes\n"  # same kernel, same state
    r = victim.run("import os\nos.kill(os.getpid(), 9)")  # the kernel may kill itself: it is restarted
    assert r.state_lost and r.exit_code == 137 and "signal 9" in r.error and not r.oom_killed
    _usable(victim)
    assert victim.run_shell("tr '\\0' ' ' < /proc/1/cmdline | head -c 16").stdout.strip() == "python3 -u -B -c"


def test_sleeping_forever_after_timeout_leaves_nothing_running(victim: DockerSandbox) -> None:
    code = (
        "import subprocess, time\n"
        "subprocess.Popen(['sleep', '100000'], start_new_session=True)\n"
        "subprocess.Popen(['bash', '-c', 'trap \"\" TERM HUP INT; sleep 100000'])\n"
        "time.sleep(100000)"
    )
    r = victim.run(code, timeout=1)
    assert r.timed_out and r.state_lost
    r = victim.run_shell("ps -eo comm --no-headers | sort | tr '\\n' ' '")
    assert "sleep" not in r.stdout, r.stdout
    _usable(victim)


def test_shell_timeout_kills_its_process_group(victim: DockerSandbox) -> None:
    victim.run("kept = 'yes'")
    r = victim.run_shell("sleep 100000 & sleep 100000", timeout=1)
    assert r.timed_out and r.exit_code == 124
    assert "sleep" not in victim.run_shell("ps -eo comm --no-headers").stdout
    assert victim.run("print(kept)").stdout == "yes\n"  # a shell timeout does not touch the Python kernel
