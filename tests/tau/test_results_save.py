"""A writer killed (SIGKILL) in the middle of the results save leaves its temp file; the next save removes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from keye_agent.tau.results import Results

CHILD = textwrap.dedent("""\
    import os, sys, time
    from keye_agent.tau.results import Results

    def stuck(fd):  # the moment between writing the temp file and renaming it
        print("ready", flush=True)
        time.sleep(60)

    os.fsync = stuck
    Results(info={"run": "killed"}, tasks=[]).save(sys.argv[1])
""")


def test_temp_file_of_a_writer_killed_mid_save_is_removed_by_the_next_save(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = list(tmp_path.glob(".results.json.*.tmp"))
    assert [p.name for p in left] == [f".results.json.{proc.pid}.tmp"]  # what the kill leaves behind
    Results(info={"run": "resumed"}, tasks=[]).save(out)
    assert list(tmp_path.glob(".*.tmp")) == [] and Results.load(out).info == {"run": "resumed"}
