"""`keye-agent tau run --ray`: simulations on Ray workers, on real local Ray clusters started by the tests.

- `--ray` alone: the command starts a cluster on this machine for the run (its CPUs: 2 here); the results equal the
  single-process runner's, simulation for simulation, and the work was spread over several workers.
- `--ray ADDRESS`: a cluster started with `ray start --head` on loopback; the driver is killed with SIGKILL mid-run
  and resumed: nothing finished is lost, nothing runs twice.
The participants are the oracle (no model); the slow domain's tool is an `async def` that sleeps, so simulations are
still in flight when the driver is killed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from keye_agent.cli.main import main
from keye_agent.tau import Results

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")


def _key(s) -> tuple[str, int]:
    return (s.task_id, s.trial)


def _outcome(results: Results) -> dict:
    return {_key(s): (s.termination_reason, s.reward, [m.content for m in s.messages if m.role == "tool"])
            for s in results.simulations}


README_LINE = "keye-agent tau run --domain mock --agent-model oracle --user-model oracle --num-trials 2 --ray"


def test_bare_ray_flag_runs_on_a_local_cluster_like_one_process(tmp_path, capsys) -> None:
    """The README's line (bare --ray: a cluster on this machine), against the same run in one process."""
    assert README_LINE in (ROOT / "README.md").read_text()
    here, spread = tmp_path / "here.json", tmp_path / "ray.json"
    line = README_LINE.split()[1:]
    extra = ["--max-concurrency", "4", "--json"]
    assert main([*line[:-1], *extra, "--save-to", str(here)]) == 0
    assert main([*line, *extra, "--ray-workers", "2", "--save-to", str(spread)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["num_simulations"] == 20 and summary["avg_reward"] == 0.8
    a, b = Results.load(here), Results.load(spread)
    assert _outcome(a) == _outcome(b) and len(b.simulations) == 20
    assert len({s.info["ray_worker"] for s in b.simulations}) >= 2  # spread over the workers
    assert not Path(f"{spread}.ckpt.jsonl").exists()
    import ray

    assert not ray.is_initialized()  # the run stopped the cluster it started


def _slow_domain(root: Path) -> Path:
    d = root / "slow"
    d.mkdir()
    (d / "policy.md").write_text("Count ticks.")
    (d / "db.json").write_text('{"counters": {}}')
    (d / "tools.yaml").write_text(textwrap.dedent("""\
        tools:
          - name: tick
            kind: write
            description: Count a tick, slowly.
            arguments:
              name: {type: string, description: The counter, required: true}
            python: slow.py:tick
        """))
    (d / "slow.py").write_text(textwrap.dedent("""\
        import asyncio

        async def tick(db, name):
            await asyncio.sleep(0.25)
            db["counters"][name] = db["counters"].get(name, 0) + 1
            return db["counters"][name]
        """))
    tick = {"name": "tick", "arguments": {"name": "c"}}
    tasks = [{"id": f"t{i}", "user_scenario": {"instructions": "Tick twice."},
              "evaluation_criteria": {"actions": [{"action_id": "a", **tick}, {"action_id": "b", **tick}],
                                      "reward_basis": ["DB"]}} for i in range(8)]
    (d / "tasks.json").write_text(json.dumps(tasks))
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for k in map(int, kids):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


@pytest.fixture
def ray_cluster():
    """`ray start --head --block` on loopback (only) with 2 CPUs, in a temp dir of its own; stopped (and every process it
    started) and removed at the end."""
    tmp = tempfile.mkdtemp(prefix="kr", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    port = _free_port()
    # Ray swaps 127.0.0.1 for the machine's outward address unless told it is not clustering: keep to loopback
    env = {**os.environ, "RAY_TMPDIR": tmp, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           # the cluster's own token, given to it and to the driver: nothing read from or written to ~/.ray
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    log = open(Path(tmp) / "ray-start.log", "w")  # noqa: SIM115 - closed below, after the cluster stops
    proc = subprocess.Popen([str(RAY), "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
                             "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
                             "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT)
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # up once its GCS port answers
            family |= _descendants(proc.pid)
            if proc.poll() is not None:
                pytest.fail("ray start failed: " + (Path(tmp) / "ray-start.log").read_text()[-2000:])
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        family |= _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in family:  # anything of this cluster's that outlived it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_driver_killed_mid_run_then_resumed_on_a_running_cluster(ray_cluster, tmp_path) -> None:
    address, env = ray_cluster
    domain, out = _slow_domain(tmp_path), tmp_path / "slow.json"
    ckpt = Path(f"{out}.ckpt.jsonl")
    argv = [sys.executable, "-m", "keye_agent.cli.main", "tau", "run", "--domain", str(domain), "--agent-model",
            "oracle", "--user-model", "oracle", "--num-trials", "3", "--max-concurrency", "4", "--save-to", str(out),
            "--ray", address, "--json"]
    with open(tmp_path / "driver.log", "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if ckpt.exists() and ckpt.read_text().count("\n") >= 3:
                    break
                if proc.poll() is not None:
                    pytest.fail("the run ended before it could be killed: " + (tmp_path / "driver.log").read_text())
                time.sleep(0.1)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    saved = Results.load(out)  # the results file and the checkpoint the killed driver left
    assert 3 <= len(saved.simulations) < 24
    kept = {s.id: _key(s) for s in saved.simulations}
    done = subprocess.run([*argv, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["avg_reward"] == 1.0
    final = Results.load(out)
    keys = [_key(s) for s in final.simulations]
    assert len(keys) == 24 and len(set(keys)) == 24  # every (task, trial) once: nothing lost, nothing twice
    assert {i: k for i, k in ((s.id, _key(s)) for s in final.simulations) if i in kept} == kept
    assert not ckpt.exists()


def test_a_worker_that_dies_costs_only_its_simulations_in_flight(tmp_path) -> None:
    """A tool that kills its worker's process (while a marker file exists): the simulations in flight there end
    in infrastructure_error (left out of the figures), the worker is started again and the run goes on; --resume
    then runs exactly those again."""
    import asyncio

    import ray

    from keye_agent.tau import RunSettings, load_domain, summarize
    from keye_agent.tau.ray_runner import RunSpec, run_tasks_ray

    d = _slow_domain(tmp_path)
    marker = tmp_path / "crash"
    marker.write_text("")
    (d / "slow.py").write_text((d / "slow.py").read_text() + textwrap.dedent(f"""\

        async def crash(db, name):
            import os
            if os.path.exists({str(marker)!r}):
                os._exit(1)
            return "fine"
        """))
    (d / "tools.yaml").write_text((d / "tools.yaml").read_text() + (
        "  - name: crash\n    kind: write\n    description: Crash the worker while the marker exists.\n"
        "    arguments:\n      name: {type: string, description: Anything, required: true}\n"
        "    python: slow.py:crash\n"))
    tasks = json.loads((d / "tasks.json").read_text())
    tasks[0]["evaluation_criteria"]["actions"] = [{"action_id": "x", "name": "crash", "arguments": {"name": "c"}}]
    (d / "tasks.json").write_text(json.dumps(tasks))
    domain, out = load_domain(str(d)), tmp_path / "r.json"
    spec = RunSpec(str(d), "oracle", "oracle")

    def settings(**kw):
        return RunSettings(num_trials=2, max_concurrency=4, save_to=out, agent_name="oracle", user_name="oracle",
                           **kw)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")  # loopback
    try:
        first = asyncio.run(run_tasks_ray(domain, domain.tasks, spec, settings(), workers=2))
        lost = {_key(s) for s in first.simulations if s.termination_reason == "infrastructure_error"}
        assert {("t0", 0), ("t0", 1)} <= lost
        assert all(s.reward == 1.0 for s in first.simulations if _key(s) not in lost)
        assert len(first.simulations) == 16 and summarize(first).infra_errors == len(lost)
        marker.unlink()
        again = asyncio.run(run_tasks_ray(domain, domain.tasks, spec, settings(resume=True), workers=2))
    finally:
        ray.shutdown()
    assert sorted(_key(s) for s in again.simulations) == sorted({_key(s) for s in again.simulations})
    assert len(again.simulations) == 16 and all(s.reward == 1.0 for s in again.simulations)
    kept = {s.id for s in first.simulations if _key(s) not in lost}
    assert kept <= {s.id for s in again.simulations}
