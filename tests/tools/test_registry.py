"""ToolRegistry: validation messages, failures as results, timeouts, transient retries, concurrency, approval."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from keye_agent.errors import KeyeAgentError, ToolExecutionError, ToolNotFoundError
from keye_agent.tools import Tool, ToolOutput, ToolRegistry, tool
from keye_agent.types import ImagePart, ToolCall


@tool
def book(city: str, nights: int, guests: list[str]) -> str:
    """Book a hotel.

    Args:
        city: where
        nights: how many nights, at least 1
        guests: guest names
    """
    return f"booked {city} for {nights}"


def call(name, args, cid="c1"):
    return ToolCall(id=cid, name=name, arguments=args)


def test_schemas_in_openai_format_are_cached():
    reg = ToolRegistry([book])
    s = reg.schemas()
    assert s == [{"type": "function", "function": {"name": "book", "description": "Book a hotel.",
                                                    "parameters": book.parameters}}]
    assert reg.schemas() is s


def test_validation_error_names_each_path_and_what_is_expected():
    reg = ToolRegistry([book])
    [r] = reg.dispatch_sync([call("book", {"city": 3, "guests": ["a", 7], "extra": 1})])
    assert not r.ok and r.error_type == "ToolValidationError"
    assert "arguments.city: 3 is not of type 'string'" in r.error
    assert "arguments.guests[1]: 7 is not of type 'string'" in r.error
    assert "arguments.nights: missing required argument 'nights' (how many nights, at least 1)" in r.error
    assert "'extra' was unexpected" in r.error and "allowed properties: city, guests, nights" in r.error
    assert 'expected {"type": "string"}' in r.error


def test_unknown_tool_suggests_the_nearest_name():
    reg = ToolRegistry([book])
    [r] = reg.dispatch_sync([call("bok", {})])
    assert r.error_type == "ToolNotFoundError"
    assert "Did you mean 'book'?" in r.error and "Available tools: book" in r.error
    with pytest.raises(ToolNotFoundError):
        reg.get("nope")


def test_duplicate_registration_is_refused():
    reg = ToolRegistry([book])
    with pytest.raises(KeyeAgentError, match="already registered"):
        reg.register(book)
    reg.register(book, replace=True)
    assert len(reg) == 1


def test_a_raising_tool_becomes_an_error_result_without_host_paths_or_secrets(monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-token-value")
    here = os.getcwd()

    @tool
    def boom(x: int) -> str:
        """Fail.

        Args:
            x: anything
        """
        raise FileNotFoundError(f"{here}/data/secret.txt not found, token s3cr3t-token-value")

    [r] = ToolRegistry([boom]).dispatch_sync([call("boom", {"x": 1})])
    assert not r.ok and r.error_type == "FileNotFoundError"
    assert here not in r.error and "<path>" in r.error
    assert "s3cr3t-token-value" not in r.error and "***" in r.error


def test_timeout_is_retried_then_reported():
    attempts = []

    async def slow(x: int) -> str:
        attempts.append(x)
        await asyncio.sleep(5)
        return "late"

    t = Tool(name="slow", description="Slow.", parameters={"type": "object", "properties": {"x": {"type": "integer"}}},
             fn=slow, timeout_s=0.05, retries=1)
    [r] = ToolRegistry([t], backoff_base_s=0.001).dispatch_sync([call("slow", {"x": 1})])
    assert not r.ok and r.error_type == "ToolTimeoutError"
    assert "did not finish within 0.05 s" in r.error and "after 2 attempts" in r.error
    assert len(attempts) == 2 and r.attempts == 2


def test_a_state_changing_tool_that_timed_out_is_not_called_again():
    """Its first attempt may have made the change (a sync tool runs on past its timeout): a retry could make it
    twice. A transient error it raises itself (it says nothing was done) is still retried."""
    attempts = []

    async def book(x: int) -> str:
        attempts.append(x)
        await asyncio.sleep(5)
        return "booked"

    t = Tool(name="book", description="Book.", parameters={"type": "object", "properties": {"x": {"type": "integer"}}},
             fn=book, timeout_s=0.05, retries=2, mutates_state=True)
    [r] = ToolRegistry([t], backoff_base_s=0.001).dispatch_sync([call("book", {"x": 1})])
    assert not r.ok and r.error_type == "ToolTimeoutError" and attempts == [1] and r.attempts == 1

    n = {"calls": 0}

    def flaky() -> str:
        n["calls"] += 1
        if n["calls"] == 1:
            raise ToolExecutionError("503 before anything was written", transient=True)
        return "done"

    t2 = Tool(name="write", description="Write.", parameters={"type": "object"}, fn=flaky, retries=1,
              mutates_state=True)
    [r2] = ToolRegistry([t2], backoff_base_s=0.001).dispatch_sync([call("write", {})])
    assert r2.ok and r2.content == "done" and n["calls"] == 2


def test_transient_errors_are_retried_until_success():
    n = {"calls": 0}

    @tool(retries=3)
    def flaky(q: str) -> str:
        """Sometimes fails.

        Args:
            q: query
        """
        n["calls"] += 1
        if n["calls"] < 3:
            raise ToolExecutionError("HTTP 503 from upstream", transient=True)
        return "ok"

    [r] = ToolRegistry([flaky], backoff_base_s=0.001).dispatch_sync([call("flaky", {"q": "a"})])
    assert r.ok and r.content == "ok" and r.attempts == 3 and n["calls"] == 3


def test_permanent_errors_are_not_retried():
    n = {"calls": 0}

    @tool(retries=3)
    def bad(q: str) -> str:
        """Always fails.

        Args:
            q: query
        """
        n["calls"] += 1
        raise ToolExecutionError("HTTP 404: no such order", transient=False)

    [r] = ToolRegistry([bad], backoff_base_s=0.001).dispatch_sync([call("bad", {"q": "a"})])
    assert not r.ok and n["calls"] == 1 and r.error == "HTTP 404: no such order"


def test_retry_after_replaces_the_backoff_and_a_longer_ask_than_the_cap_is_final():
    reg = ToolRegistry(backoff_base_s=0.01, max_retry_after_s=30)
    t = Tool(name="t", description="T.", parameters={"type": "object"}, fn=lambda: None, timeout_s=60)
    assert reg._retrier(t).next_wait(ToolExecutionError("429", transient=True, retry_after=2.0)) == 2.0
    assert reg._retrier(t).next_wait(ToolExecutionError("429", transient=True, retry_after=999)) is None
    assert reg._retrier(t).next_wait(ToolExecutionError("500", transient=True)) <= 0.01


def test_a_wait_never_outlives_the_tools_timeout():
    """Issue 24 item 8: a 2 s tool whose server asks to wait 30 s gets the error back at once; it used to sleep the
    30 s cap (and then succeed, so this test failed on that code)."""
    calls = []

    async def limited() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ToolExecutionError("429 Too Many Requests", transient=True, retry_after=30.0)
        return "served"

    t = Tool(name="limited", description="Rate limited.", parameters={"type": "object"}, fn=limited, timeout_s=2.0,
             retries=2)
    [r] = ToolRegistry([t], max_retry_after_s=30.0).dispatch_sync([call("limited", {})])
    assert not r.ok and r.attempts == 1 and len(calls) == 1
    assert "not retried: the server asked to wait 30 s, more than the 2 s this call may wait" in r.error


def test_independent_calls_run_concurrently():
    """Each call waits for the other to start: run one after the other, they would both time out."""
    events: dict[str, asyncio.Event] = {}

    async def meet(me: str, other: str) -> str:
        events.setdefault(me, asyncio.Event()).set()
        await asyncio.wait_for(events.setdefault(other, asyncio.Event()).wait(), 2)
        return me

    t = Tool(name="meet", description="Rendezvous.", fn=meet, timeout_s=3, retries=0,
             parameters={"type": "object", "properties": {"me": {"type": "string"}, "other": {"type": "string"}}})
    res = ToolRegistry([t]).dispatch_sync([call("meet", {"me": "a", "other": "b"}, "1"),
                                          call("meet", {"me": "b", "other": "a"}, "2")])
    assert [r.ok for r in res] == [True, True] and [r.content for r in res] == ["a", "b"]


def test_state_changing_calls_keep_their_order_and_run_alone():
    log: list[str] = []
    lock = threading.Lock()
    active = {"n": 0, "max": 0}

    def make(name: str, mutates: bool) -> Tool:
        def fn(x: int) -> str:
            with lock:
                active["n"] += 1
                active["max"] = max(active["max"], active["n"])
            import time

            time.sleep(0.02)
            with lock:
                log.append(f"{name}{x}")
                active["n"] -= 1
            return "ok"

        return Tool(name=name, description=name, fn=fn, mutates_state=mutates,
                    parameters={"type": "object", "properties": {"x": {"type": "integer"}}})

    reg = ToolRegistry([make("write", True), make("read", False)])
    calls = [call("write", {"x": 1}, "1"), call("write", {"x": 2}, "2"), call("write", {"x": 3}, "3")]
    res = reg.dispatch_sync(calls)
    assert [r.call_id for r in res] == ["1", "2", "3"] and log == ["write1", "write2", "write3"]
    assert active["max"] == 1


def test_approval_callback_can_deny_state_changing_calls():
    @tool(mutates_state=True)
    def delete(path: str) -> str:
        """Delete a file.

        Args:
            path: which
        """
        return "deleted"

    reg = ToolRegistry([delete, book])
    asked = []

    def approve(t, c):
        asked.append(t.name)
        return False

    res = reg.dispatch_sync([call("delete", {"path": "x"}, "1"),
                             call("book", {"city": "Oslo", "nights": 1, "guests": []}, "2")], approve=approve)
    assert asked == ["delete"]  # read-only tools are not asked about
    assert res[0].error_type == "ToolApprovalDenied" and "did not approve" in res[0].error
    assert res[1].ok


def test_tool_output_with_attachments_and_json_values():
    @tool
    def pic(n: int) -> ToolOutput:
        """Make a picture.

        Args:
            n: size
        """
        return ToolOutput(content="one image", attachments=[ImagePart(data="iVBORw0KGgo=")])

    @tool
    def data(n: int) -> dict:
        """Return data.

        Args:
            n: size
        """
        return {"n": n, "items": [1, 2]}

    r1, r2 = ToolRegistry([pic, data]).dispatch_sync([call("pic", {"n": 1}, "1"), call("data", {"n": 2}, "2")])
    assert r1.content == "one image" and len(r1.attachments) == 1
    assert r2.content == '{"n": 2, "items": [1, 2]}'


def test_bad_tool_definitions():
    from keye_agent.errors import ToolDefinitionError

    with pytest.raises(ToolDefinitionError, match="not valid"):
        Tool(name="bad name!", description="x", parameters={"type": "object"}, fn=lambda: 1)
    with pytest.raises(ToolDefinitionError, match="type 'object'"):
        Tool(name="t", description="x", parameters={"type": "string"}, fn=lambda: 1)
    with pytest.raises(ToolDefinitionError, match="not a valid JSON Schema"):
        Tool(name="t", description="x", parameters={"type": "object", "properties": {"a": {"type": "nope"}}},
             fn=lambda: 1)


def test_a_sync_tool_past_its_timeout_does_not_keep_the_process_alive(tmp_path):
    """The timed-out call's thread is still sleeping when the program ends; the interpreter must exit anyway."""
    import subprocess
    import sys

    code = (
        "import time\n"
        "from keye_agent.tools import ToolRegistry, tool\n"
        "from keye_agent.types import ToolCall\n"
        "@tool(timeout_s=0.1, retries=0)\n"
        "def stuck(x: int) -> str:\n"
        "    '''Hang.\n\n    Args:\n        x: anything\n    '''\n"
        "    time.sleep(60)\n"
        "    return 'late'\n"
        "[r] = ToolRegistry([stuck]).dispatch_sync([ToolCall(id='1', name='stuck', arguments={'x': 1})])\n"
        "print(r.error_type)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ToolTimeoutError"
