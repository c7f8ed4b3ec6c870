"""Progress a person sees, through the real `keye-agent` command with stderr on a pseudo-terminal and stdout on a
pipe: what is drawn goes to stderr, and stdout stays the command's own (one JSON document with `--json`).
The TAU runs use the oracle agent and user (gold actions, no model) on the real store domain and runner."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from keye_agent.cli.progress import spinner

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("keye-agent"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _run_with_terminal_stderr(*args: str, cwd: Path) -> tuple[int, str, str]:
    """(exit status, stdout, what the pseudo-terminal on stderr showed, escape codes removed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm", "COLUMNS": "160"}
    proc = subprocess.Popen([EXE, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the other end closed: the command has exited
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read() if proc.stdout else ""
    rc = proc.wait(timeout=120)
    os.close(master)
    return rc, stdout, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


def test_tau_run_shows_a_bar_with_the_average_reward_on_stderr(tmp_path: Path) -> None:
    rc, stdout, shown = _run_with_terminal_stderr(
        "tau", "run", "--domain", "store", "--agent-model", "oracle", "--user-model", "oracle", "--num-tasks", "2",
        "--save-to", str(tmp_path / "r.json"), "--json", cwd=tmp_path)
    assert rc == 0, shown
    summary = json.loads(stdout)  # stdout is the summary alone
    assert summary["num_simulations"] == 2
    sims = json.loads((tmp_path / "r.json").read_text())["simulations"]
    for s in sims:  # one line per finished simulation
        assert f"{s['task_id']} trial 0: user_stop, reward 1" in shown, shown
    assert "2/2" in shown and "avg reward 1.000" in shown, shown


def test_tau_view_of_a_missing_file_says_so_on_stderr_with_a_hint(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.run([EXE, "tau", "view", "nowhere.json"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "error: cannot read results file nowhere.json: No such file or directory"
    assert lines[1].startswith("hint: ") and "--save-to" in lines[1]


def test_a_spinner_log_line_is_printed_where_nothing_is_drawn_live() -> None:
    """A build's log lines: on a file they are printed (a CI log keeps them); on a terminal they become the
    spinner's text."""
    file = io.StringIO()
    with spinner(Console(file=file, force_terminal=False), "building the sandbox image") as wait:
        wait.log("I: Retrieving Packages")
    assert file.getvalue() == "I: Retrieving Packages\n"
    term = io.StringIO()
    with spinner(Console(file=term, force_terminal=True, width=100), "building the sandbox image") as wait:
        wait.log("I: Retrieving Packages")
        assert "Retrieving Packages" in str(wait._status.status)


def test_the_first_token_spinner_starts_only_on_a_terminal_and_only_for_a_slow_step() -> None:
    """A spinner is a refresh thread started and joined: on a pipe none is started, and a step whose first output
    comes within Waiting.delay_s starts none either (they cost 20-40 ms between steps on a loaded machine)."""
    import asyncio
    import io
    import threading

    from rich.console import Console

    from keye_agent.agent.events import StepStarted, TextDelta
    from keye_agent.cli.render import Waiting

    pipe = Waiting(Console(file=io.StringIO()))
    pipe(StepStarted(step=1))
    assert pipe._status is None and pipe._timer is None

    async def go() -> None:
        term = Waiting(Console(file=io.StringIO(), force_terminal=True))
        before = threading.active_count()
        term(StepStarted(step=1))
        term(TextDelta(step=1, text="hi"))  # a fast step: its output came first
        await asyncio.sleep(term.delay_s * 2)
        assert term._status is None and threading.active_count() == before
        term(StepStarted(step=2))  # a slow step: the spinner shows after the delay
        await asyncio.sleep(term.delay_s * 2)
        assert term._status is not None
        term.stop()
        assert term._status is None

    asyncio.run(go())


def test_the_tau_bar_names_the_simulations_running_now() -> None:
    import io

    from keye_agent.cli.progress import SimulationBar
    from keye_agent.tau.results import SimulationRun

    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    with SimulationBar(console, "store") as bar:
        bar(0, 3, None)
        for trial in range(3):
            bar.started("t1", trial)
        assert bar._running_text() == "running t1#0, t1#1 +1"
        sim = SimulationRun(task_id="t1", trial=1, start_time="", end_time="", duration=2.0,
                            termination_reason="user_stop", reward_info={"reward": 1.0}, messages=[])
        bar(1, 3, sim)
        assert bar.running == ["t1#0", "t1#2"] and bar.average == 1.0
    assert "t1 trial 1: user_stop, reward 1, 2.0 s" in console.file.getvalue()
