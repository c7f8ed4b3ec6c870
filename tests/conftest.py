"""Suite-wide pytest set-up: a per-suite timing table at the end of the run (CI prints it)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

_SUITE_TIMES: dict[str, float] = defaultdict(float)
_SUITE_COUNTS: dict[str, int] = defaultdict(int)
_ROOT = Path(__file__).parent


def _suite(nodeid: str) -> str:
    parts = nodeid.split("::")[0].split("/")
    # "tests/agent/test_loop.py" -> "agent"; a file directly under tests/ is its own suite
    return parts[1] if len(parts) > 2 else parts[-1].removesuffix(".py")


def pytest_runtest_logreport(report):  # type: ignore[no-untyped-def]
    _SUITE_TIMES[_suite(report.nodeid)] += report.duration
    if report.when == "call":
        _SUITE_COUNTS[_suite(report.nodeid)] += 1


def pytest_terminal_summary(terminalreporter):  # type: ignore[no-untyped-def]
    if not _SUITE_TIMES:
        return
    tr = terminalreporter
    tr.section("time per test suite")
    for name, secs in sorted(_SUITE_TIMES.items(), key=lambda kv: -kv[1]):
        tr.write_line(f"{name:<28} {_SUITE_COUNTS[name]:>5} tests {secs:>9.1f} s")
    tr.write_line(f"{'total':<28} {sum(_SUITE_COUNTS.values()):>5} tests {sum(_SUITE_TIMES.values()):>9.1f} s")


