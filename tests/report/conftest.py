"""Headless Chromium for the report tests: Debian's chromium, which scripts/setup_chromium.sh installs (make test
starts it in the background; these fixtures wait for it, or run it when nothing did)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.trace.otlp_receiver import otlp_receiver  # noqa: F401  (a fixture: the README's --trace otlp example)

ROOT = Path(__file__).resolve().parents[2]
STATUS = ROOT / ".cache" / "chromium.status"
WAIT_S = 1200


def _find() -> str | None:
    return shutil.which("chromium")


def _installing() -> bool:
    """scripts/setup_chromium.sh is installing chromium now (its status names a pid that is still alive)."""
    try:
        state, _, pid = STATUS.read_text().strip().partition(" ")
    except OSError:
        return False
    return state == "installing" and pid.isdigit() and Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="session")
def chromium() -> str:
    exe = _find()
    deadline = time.monotonic() + WAIT_S
    while exe is None and _installing() and time.monotonic() < deadline:
        time.sleep(2)  # scripts/test.sh's background install is under way
        exe = _find()
    if exe is None:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup_chromium.sh")], capture_output=True, text=True,
                              timeout=WAIT_S)
        exe = _find()
        if exe is None:
            pytest.fail("chromium is not installed and scripts/setup_chromium.sh could not install it: "
                        f"{(proc.stdout + proc.stderr)[-2000:]}")
    return exe


@pytest.fixture
def browse(chromium: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``browse(page, *flags)``: headless Chromium on a local page (--dump-dom, --screenshot=PATH ...), with a
    profile of its own; as root it needs --no-sandbox."""
    def run(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *args, page.resolve().as_uri()]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    return run

