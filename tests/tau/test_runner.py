"""Concurrent runs keep simulations apart, resume finishes exactly what is missing (also after kill -9 of a real
process), corrupt results files give clear errors, and the CLI runs and views."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keye_agent.cli.tau import app
from keye_agent.tau import OracleAgent, OracleUser, Results, ResultsError, RunSettings, pass_hat_k, run_tasks, summarize

HERE = Path(__file__).resolve().parent


def _oracle(domain, tasks, **kw):
    return asyncio.run(run_tasks(domain, tasks, lambda t, k: OracleAgent(t), lambda t, k: OracleUser(t),
                                 RunSettings(**kw)))


def test_concurrent_simulations_do_not_share_state(mock_domain) -> None:
    """20 concurrent trials of a task that creates task_2: with a shared database later ones would get task_3..."""
    task = mock_domain.task("create_task_1")
    res = _oracle(mock_domain, [task], num_trials=20, max_concurrency=8)
    assert len(res.simulations) == 20
    assert sorted(s.trial for s in res.simulations) == list(range(20))
    for s in res.simulations:
        created = [m for m in s.messages if m.role == "tool" and not m.error]
        assert json.loads(created[0].content)["task_id"] == "task_2"
        assert s.reward == 1.0


def test_resume_runs_only_what_is_missing(mock_domain, tmp_path) -> None:
    out = tmp_path / "r.json"
    tasks = mock_domain.tasks[:4]
    first = _oracle(mock_domain, tasks[:2], num_trials=2, save_to=out)
    ids = {s.id for s in first.simulations}
    with pytest.raises(ResultsError, match="--resume"):
        _oracle(mock_domain, tasks, num_trials=2, save_to=out)
    with pytest.raises(ResultsError, match="same values"):
        _oracle(mock_domain, tasks, num_trials=3, save_to=out, resume=True)
    second = _oracle(mock_domain, tasks, num_trials=2, save_to=out, resume=True)
    assert len(second.simulations) == 8 and ids <= {s.id for s in second.simulations}
    assert [t.id for t in Results.load(out).tasks] == [t.id for t in tasks]


def test_resume_reruns_simulations_that_broke(mock_domain, tmp_path) -> None:
    """A simulation that raised inside the runner is recorded (unexpected_error, with the traceback) and is run
    again by --resume."""
    out = tmp_path / "r.json"
    task = mock_domain.task("update_task_1")

    def broken(t, k):
        raise RuntimeError("backend construction failed")

    res = asyncio.run(run_tasks(mock_domain, [task], broken, lambda t, k: OracleUser(t), RunSettings(save_to=out)))
    (sim,) = res.simulations
    assert sim.termination_reason == "unexpected_error" and sim.reward == 0.0
    assert "backend construction failed" in sim.info["error"] and "Traceback" in sim.info["traceback"]
    again = _oracle(mock_domain, [task], save_to=out, resume=True)
    assert [s.termination_reason for s in again.simulations] == ["user_stop"]
    assert again.simulations[0].reward == 1.0


def test_resume_after_kill_9(tau2_data, mock_domain, tmp_path) -> None:
    """A real run in a child process is killed with SIGKILL mid-run; the file it leaves is valid, keeps every
    simulation finished before the kill, and --resume completes the rest."""
    out = tmp_path / "killed.json"
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    proc = subprocess.Popen([sys.executable, str(HERE / "_slow_run.py"), str(tau2_data), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        n_before = 0
        while time.monotonic() < deadline:
            if out.exists():
                n_before = len(Results.load(out).simulations)
                if n_before >= 3:
                    break
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = Results.load(out)
    assert 3 <= len(saved.simulations) < 30
    kept = {s.id for s in saved.simulations}
    resumed = _oracle(mock_domain, mock_domain.tasks, num_trials=3, save_to=out, resume=True)
    assert len(resumed.simulations) == 30
    assert kept <= {s.id for s in resumed.simulations}
    assert len({(s.task_id, s.trial) for s in resumed.simulations}) == 30


def test_corrupt_results_files_give_clear_errors(tmp_path, mock_domain) -> None:
    out = tmp_path / "r.json"
    _oracle(mock_domain, mock_domain.tasks[:1], save_to=out)
    text = out.read_text()
    out.write_text(text[: len(text) // 2])
    with pytest.raises(ResultsError, match=r"r\.json:\d+:\d+: the results file is not valid JSON"):
        Results.load(out)
    with pytest.raises(ResultsError, match="not valid JSON"):
        _oracle(mock_domain, mock_domain.tasks[:1], save_to=out, resume=True)
    out.write_text(json.dumps([1, 2]))
    with pytest.raises(ResultsError, match="not a results file"):
        Results.load(out)
    data = json.loads(text)
    data["simulations"][0]["termination_reason"] = None
    out.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="simulations.0.termination_reason"):
        Results.load(out)
    r = CliRunner().invoke(app, ["view", str(out)])
    assert r.exit_code == 2 and "termination_reason" in r.output


def test_checkpoint_of_a_killed_run(mock_domain, tmp_path) -> None:
    """The checkpoint beside a results file: a line cut by a killed writer is dropped, a damaged one is an error,
    and a finished run leaves no checkpoint behind."""
    from keye_agent.tau.results import checkpoint_path

    out = tmp_path / "r.json"
    _oracle(mock_domain, mock_domain.tasks[:3], save_to=out)
    ckpt = checkpoint_path(out)
    assert not ckpt.exists()
    full = Results.load(out)
    head = Results(info=full.info, tasks=full.tasks)
    head.save(out)
    lines = [json.dumps(s.to_tau2()) for s in full.simulations]
    ckpt.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:50])
    assert [s.id for s in Results.load(out).simulations] == [s.id for s in full.simulations[:2]]
    ckpt.write_text(lines[0] + "\n" + lines[1][:50] + "\n" + lines[2] + "\n")
    with pytest.raises(ResultsError, match=r"ckpt\.jsonl:2: not a simulation record"):
        Results.load(out)
    ckpt.write_text(lines[0] + "\n")
    resumed = _oracle(mock_domain, mock_domain.tasks[:3], save_to=out, resume=True)
    assert len(resumed.simulations) == 3 and resumed.simulations[0].id == full.simulations[0].id
    assert not ckpt.exists()
    out.unlink()
    ckpt.write_text(lines[0] + "\n")
    with pytest.raises(ResultsError, match="does not"):
        _oracle(mock_domain, mock_domain.tasks[:3], save_to=out)


def test_pass_hat_k() -> None:
    assert pass_hat_k(4, 4, 4) == 1.0
    assert pass_hat_k(4, 2, 1) == 0.5
    assert pass_hat_k(4, 2, 2) == pytest.approx(1 / 6)
    assert pass_hat_k(4, 3, 4) == 0.0
    with pytest.raises(ValueError):
        pass_hat_k(2, 1, 3)


def test_summary_pass_hat_over_trials(mock_domain) -> None:
    res = _oracle(mock_domain, mock_domain.tasks, num_trials=3, max_concurrency=8)
    s = summarize(res)
    assert s.num_tasks == 10 and s.num_simulations == 30
    assert s.pass_hat == {1: 0.8, 2: 0.8, 3: 0.8}  # the oracle is deterministic; two tasks cannot be met


def test_cli_run_and_view(tau2_data, tmp_path) -> None:
    out = tmp_path / "cli.json"
    runner = CliRunner()
    r = runner.invoke(app, ["run", "--domain", "mock", "--tau2-data", str(tau2_data), "--agent-model", "oracle",
                            "--user-model", "oracle", "--num-trials", "2", "--task-ids", "update_task_1,create_task_1",
                            "--max-concurrency", "4", "--seed", "7", "--save-to", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["pass_hat"] == {"1": 1.0, "2": 1.0} and summary["num_simulations"] == 4
    saved = json.loads(out.read_text())
    assert {"timestamp", "info", "tasks", "simulations"} <= set(saved)
    sim = saved["simulations"][0]
    for key in ("id", "task_id", "start_time", "end_time", "duration", "termination_reason", "reward_info",
                "messages", "trial", "seed"):
        assert key in sim
    assert any(m.get("tool_calls") for m in sim["messages"])
    r = runner.invoke(app, ["view", str(out), "--task-id", "update_task_1", "--trial", "1"])
    assert r.exit_code == 0 and "update_task_status" in r.output and "user_stop" in r.output
    other = tmp_path / "store.json"
    r = runner.invoke(app, ["run", "--domain", "store", "--agent-model", "oracle", "--user-model", "oracle",
                            "--num-tasks", "2", "--save-to", str(other)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["view", str(out), str(other)])
    assert r.exit_code == 0 and "store" in r.output and "mock" in r.output and "pass^2" in r.output
    r = runner.invoke(app, ["view", str(out), "--task-id", "nope"])
    assert r.exit_code == 2 and "no simulation" in r.output
    r = runner.invoke(app, ["run", "--domain", "mock", "--tau2-data", str(tau2_data), "--agent-model", "oracle",
                            "--user-model", "idle", "--save-to", str(tmp_path / "x.json")])
    assert r.exit_code != 0
