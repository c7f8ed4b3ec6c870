"""The retry helper: Retry-After parsing, backoff with its cap and jitter, the deadline, and the retry loops.

Clocks and sleeps are injected where a wait would otherwise be real, so nothing here sleeps for long.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keye_agent.errors import ToolExecutionError, ToolTimeoutError, ToolValidationError, TransientError
from keye_agent.retry import Backoff, Retrier, is_transient, parse_retry_after

NOW = 1_800_000_000.0  # a fixed Unix time for HTTP dates


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-3") == 0.0  # never negative
    assert parse_retry_after(7) == 7.0


def test_retry_after_as_an_http_date() -> None:
    in_90s = email.utils.formatdate(NOW + 90, usegmt=True)  # e.g. "Fri, 15 Jan 2027 08:01:30 GMT"
    assert parse_retry_after(in_90s, now=NOW) == pytest.approx(90.0)
    past = email.utils.formatdate(NOW - 600, usegmt=True)
    assert parse_retry_after(past, now=NOW) == 0.0
    # the obsolete RFC 850 form is still a date
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now=784111777.0 - 10) == pytest.approx(10.0)


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "Mon, 99 Foo 2026"])
def test_unreadable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_backoff_doubles_up_to_its_cap_without_jitter() -> None:
    b = Backoff(base_s=0.5, max_s=3.0, jitter=0.0)
    assert [b.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_within_its_bounds_and_a_seed_repeats_it() -> None:
    b = Backoff(base_s=1.0, max_s=100.0, jitter=0.5)
    rng = random.Random(7)
    for attempt in range(1, 7):
        full = 2.0 ** (attempt - 1)
        draws = [b.delay(attempt, rng=rng) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in draws)
        assert len(set(draws)) > 150  # really random, not one value
    again = random.Random(7)
    first = [b.delay(1, rng=random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2] == b.delay(1, rng=again)


def test_retry_after_replaces_the_backoff() -> None:
    b = Backoff(base_s=5.0, max_s=30.0)
    assert b.delay(1, retry_after=0.2) == 0.2
    assert b.delay(3, retry_after=0.0) == 0.0


def test_bad_backoff_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        Backoff(base_s=-1)


def test_what_is_transient() -> None:
    assert is_transient(TransientError("503"))
    assert is_transient(ToolExecutionError("503", transient=True))
    assert is_transient(ToolTimeoutError("slow"))
    assert not is_transient(ToolExecutionError("404"))
    assert not is_transient(ToolValidationError("bad"))
    assert not is_transient(ValueError("bug"))


def test_attempts_are_counted_and_end_the_retries() -> None:
    r = Retrier(Backoff(base_s=0.1, jitter=0.0), attempts=3)
    e = TransientError("503")
    assert r.next_wait(e) == 0.1 and r.next_wait(e) == 0.2
    assert r.next_wait(e) is None
    assert r.attempts == 3 and r.waits == [0.1, 0.2] and r.outcome() == "after 3 attempts"


def test_a_permanent_error_is_final_at_once() -> None:
    r = Retrier(Backoff(), attempts=5)
    assert r.next_wait(ToolExecutionError("404")) is None and r.outcome() == ""


def test_retry_after_over_the_cap_is_given_up_at_once() -> None:
    r = Retrier(Backoff(max_retry_after_s=30.0), attempts=3)
    assert r.next_wait(TransientError("429", retry_after=120.0)) is None
    assert r.attempts == 1 and r.waits == []
    assert r.outcome() == "not retried: the server asked to wait 120 s, more than the 30 s this call may wait"


def test_no_wait_ends_past_the_deadline() -> None:
    now = [100.0]
    r = Retrier(Backoff(base_s=1.0, max_s=8.0, jitter=0.0), attempts=10, deadline_s=5.0, clock=lambda: now[0])
    e = TransientError("down")
    assert r.next_wait(e) == 1.0  # ends at 101 of 105
    now[0] = 102.0
    assert r.next_wait(e) == 2.0  # ends at 104
    now[0] = 104.0
    assert r.next_wait(e) is None  # 4 s would end at 108, past the deadline
    assert r.outcome() == "after 3 attempts"


def test_a_retry_after_past_the_deadline_says_so() -> None:
    """Issue 24 item 8: a server asking for 30 s must not make a call with a 2 s budget wait the 30 s cap."""
    r = Retrier(Backoff(max_retry_after_s=30.0), attempts=3, deadline_s=2.0)
    assert r.next_wait(TransientError("429", retry_after=30.0)) is None
    assert re.search(r"asked to wait 30 s, more than the (2|1\.\d+) s left before this call's deadline", r.outcome())


def test_run_retries_until_success_with_the_waits_given() -> None:
    calls: list[int] = []
    slept: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("503", retry_after=0.25)
        return "ok"

    r = Retrier(Backoff(), attempts=4)
    assert r.run(flaky, sleep=slept.append) == "ok"
    assert len(calls) == 3 and slept == [0.25, 0.25] and r.attempts == 3


def test_arun_starts_from_a_failed_first_attempt_and_reraises_the_last_error() -> None:
    seen: list[tuple[str, float, int]] = []
    errors = iter([TransientError("second"), TransientError("third")])

    async def once() -> str:
        raise next(errors)

    async def no_sleep(_: float) -> None:
        return None

    r = Retrier(Backoff(base_s=0.01, jitter=0.0), attempts=3)
    with pytest.raises(TransientError, match="third"):
        asyncio.run(r.arun(once, failed=TransientError("first"), sleep=no_sleep,
                           on_retry=lambda e, w, n: seen.append((str(e), w, n))))
    assert seen == [("first", 0.01, 1), ("second", 0.02, 2)] and r.attempts == 3


def test_a_bug_in_the_retried_function_is_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        Retrier(Backoff(), attempts=5).run(broken, sleep=lambda _: None)
    assert len(calls) == 1


def test_the_readme_example_runs_as_written() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    [block] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "keye_agent.retry" in b]
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "in stock [0.1]"
