"""The sync-tool worker pool: warm workers, and a burst of parallel calls on as many workers at once.

Concurrency is checked with a barrier that only opens when every call of the burst runs at the same time (no timing).
"""

from __future__ import annotations

import threading

import pytest

from keye_agent.tools._pool import DaemonThreadPool


def _burst(pool: DaemonThreadPool, n: int) -> list[str]:
    barrier = threading.Barrier(n, timeout=5)

    def meet(i: int) -> str:
        barrier.wait()  # raises BrokenBarrierError unless all n run at once
        return threading.current_thread().name

    return [f.result(timeout=10) for f in [pool.submit(meet, i) for i in range(n)]]


def test_a_burst_runs_on_as_many_workers_at_once_also_when_one_is_already_idle():
    pool = DaemonThreadPool(max_workers=8)
    assert pool.submit(lambda: 1).result(timeout=5) == 1  # one warm, idle worker now
    names = _burst(pool, 3)
    assert len(set(names)) == 3 and pool.workers == 3
    assert len(set(_burst(pool, 3))) == 3 and pool.workers == 3  # the same warm workers serve the next burst


def test_workers_stay_warm_between_calls():
    pool = DaemonThreadPool(max_workers=4)
    names = {pool.submit(threading.current_thread).result(timeout=5).name for _ in range(50)}
    assert pool.workers == 1 and len(names) == 1


def test_past_the_limit_calls_wait_for_a_free_worker_and_all_finish():
    pool = DaemonThreadPool(max_workers=2)
    gate = threading.Event()
    futures = [pool.submit(lambda i=i: gate.wait(5) and i) for i in range(6)]
    gate.set()
    assert [f.result(timeout=10) for f in futures] == list(range(6)) and pool.workers == 2
    assert len(set(_burst(pool, 2))) == 2 and pool.workers == 2


def test_errors_reach_the_caller_and_the_worker_goes_on():
    pool = DaemonThreadPool(max_workers=1)
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=5)
    assert pool.submit(lambda: "next").result(timeout=5) == "next"


def test_run_async_answers_on_the_loop_and_a_cancelled_call_is_skipped():
    import asyncio

    pool = DaemonThreadPool(max_workers=1)
    ran: list[int] = []
    gate = threading.Event()

    async def main():
        first = pool.run_async(lambda: gate.wait(5) and ran.append(1) or "first")
        second = pool.run_async(ran.append, 2)  # waits behind the first on the one worker
        second.cancel()
        gate.set()
        assert await first == "first"
        with pytest.raises(ValueError, match="bad"):
            await pool.run_async(int, "bad")
        return await pool.run_async(lambda: "after")

    assert asyncio.run(main()) == "after" and ran == [1]


def test_an_eager_call_that_finishes_in_its_wait_comes_back_done_from_a_worker():
    import asyncio

    pool = DaemonThreadPool(max_workers=2)
    main_thread = threading.current_thread()

    async def main():
        fut = pool.run_async(lambda: threading.current_thread(), eager_s=5.0)
        assert fut.done()  # the loop had nothing else ready: its thread waited for the worker
        assert fut.result() is not main_thread
        with pytest.raises(ValueError, match="bad"):
            pool.run_async(int, "bad", eager_s=5.0).result()

    asyncio.run(main())


def test_an_eager_call_still_running_at_the_end_of_its_wait_is_awaited_as_usual():
    import asyncio

    pool = DaemonThreadPool(max_workers=2)
    gate = threading.Event()

    async def main():
        fut = pool.run_async(lambda: gate.wait(5) and "late", eager_s=0.001)
        assert not fut.done()  # the worker is blocked on the gate: the wait gave up
        gate.set()
        return await fut

    assert asyncio.run(main()) == "late"


def test_no_eager_wait_while_other_callbacks_are_ready():
    """The calls of one turn are gathered: each task is ready when the first submits, so none parks the loop."""
    import asyncio

    pool = DaemonThreadPool(max_workers=2)

    async def main():
        asyncio.get_running_loop().call_soon(lambda: None)
        fut = pool.run_async(lambda: "x", eager_s=5.0)
        assert not fut.done()
        return await fut

    assert asyncio.run(main()) == "x"


def test_results_at_the_edge_of_the_eager_wait_arrive_once_either_way():
    """A wait of 1 us races the worker on most calls: each result must still arrive, once, with its own value."""
    import asyncio

    pool = DaemonThreadPool(max_workers=4)

    async def main():
        got = [await pool.run_async(lambda i=i: i * 3, eager_s=1e-6) for i in range(3000)]
        assert got == [i * 3 for i in range(3000)]

    asyncio.run(main())
