"""`ToolRegistry`: holds tools, exports their schemas, validates and dispatches calls.

Every failure of a call becomes a :class:`ToolResult` with ``ok=False`` and an error the model can act on; nothing a
tool does escapes as an exception (cancellation excepted). Transient faults are retried here, with backoff, before
the model sees anything.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

from keye_agent._sync import run_sync
from keye_agent.errors import (
    KeyeAgentError,
    ToolApprovalDenied,
    ToolError,
    ToolExecutionError,
    ToolNotFoundError,
    ToolTimeoutError,
    ToolValidationError,
    redact,
)
from keye_agent.faults import tool_error_kind
from keye_agent.retry import Backoff, Retrier, is_transient
from keye_agent.types import ToolCall, ToolResult

from ._pool import DaemonThreadPool
from .base import Tool, render_output
from .decorator import tool as make_tool
from .validation import format_validation_errors, sanitize_message

# one pool for the process: a fresh default executor per run would start new threads every time
_POOL = DaemonThreadPool(max_workers=32)
EAGER_WAIT_S = 0.001
"""How long the loop's thread may wait for a sync tool on its worker before awaiting it (only while nothing else on
the loop is ready to run): a quick tool then costs no wake-up of the loop."""

ApprovalCallback = Callable[[Tool, ToolCall], "bool | Awaitable[bool]"]


class ToolRegistry:
    """A set of tools, by name.

    Example::

        registry = ToolRegistry([get_weather])
        results = registry.dispatch_sync([ToolCall(id="1", name="get_weather", arguments={"city": "Paris"})])
    """

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_retry_after_s: float = 30.0,
        max_concurrency: int = 8,
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.max_concurrency = max_concurrency
        self._schemas: list[dict[str, Any]] | None = None
        for t in tools:
            self.register(t)

    def register(self, item: Tool | Callable[..., Any], *, replace: bool = False) -> Tool:
        """Add a tool (a :class:`Tool`, or a typed, documented function turned into one by ``@tool``)."""
        t = item if isinstance(item, Tool) else make_tool(item)
        if t.name in self._tools and not replace:
            raise KeyeAgentError(f"a tool named {t.name!r} is already registered", hint="pass replace=True to override it")
        self._tools[t.name] = t
        self._schemas = None
        return t

    def unregister(self, name: str) -> None:
        self._tools.pop(name, None)
        self._schemas = None

    def merge(self, other: ToolRegistry, *, replace: bool = False) -> ToolRegistry:
        for t in other:
            self.register(t, replace=replace)
        return self

    def with_tools(self, extra: Iterable[Tool]) -> ToolRegistry:
        """A new registry with this one's tools and settings plus ``extra`` (this one is left as it is)."""
        reg = ToolRegistry(list(self._tools.values()), backoff_base_s=self.backoff_base_s,
                           backoff_max_s=self.backoff_max_s, max_retry_after_s=self.max_retry_after_s,
                           max_concurrency=self.max_concurrency)
        for t in extra:
            reg.register(t)
        return reg

    def find(self, name: str) -> Tool | None:
        """The tool named ``name``, or None."""
        return self._tools.get(name)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFoundError(self._unknown_message(name), tool=name) from None

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._tools), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        avail = ", ".join(sorted(self._tools)) or "none"
        return f"unknown tool {name!r}.{hint} Available tools: {avail}."

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """All tools in OpenAI function format (cached until the registry changes)."""
        if self._schemas is None:
            self._schemas = [t.openai_schema() for t in self._tools.values()]
        return self._schemas

    def validate(self, call: ToolCall) -> tuple[Tool, dict[str, Any]]:
        """The tool and its (coerced) arguments, or a ToolNotFoundError / ToolValidationError."""
        t = self.get(call.name)
        args = call.arguments
        if not isinstance(args, dict):
            raise ToolValidationError(
                f"arguments of {t.name!r} must be a JSON object, got {type(args).__name__}", tool=t.name
            )
        fast = t.fast_validator
        try:
            valid = fast is not None and fast.is_valid(args)
        except (ValueError, TypeError, OverflowError):  # a value JSON has no word for (a tuple, a huge int)
            valid = False
        errors = [] if valid else list(t.validator.iter_errors(args))
        if errors:
            message, problems = format_validation_errors(t, errors)
            raise ToolValidationError(message, tool=t.name, problems=problems)
        if t.coerce is not None:
            try:
                args = t.coerce(args)
            except ValueError as e:  # pydantic's ValidationError is a ValueError
                raise ToolValidationError(f"arguments of {t.name!r} are invalid: {e}", tool=t.name) from e
        return t, args

    async def call(self, call: ToolCall, *, approve: ApprovalCallback | None = None) -> ToolResult:
        """Validate and run one call; always returns a ToolResult."""
        start = time.perf_counter()
        attempts = 0
        outcome = ""
        try:
            t, args = self.validate(call)
            if approve is not None and t.needs_approval:
                verdict = approve(t, call)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                if not verdict:
                    raise ToolApprovalDenied(
                        f"the user did not approve calling {t.name!r}; do not retry it unchanged", tool=t.name
                    )
            attempts = 1
            try:
                value = await self._invoke(t, args)
            except (ToolExecutionError, ToolTimeoutError) as first:
                # the common path pays nothing for retries: the retrier exists only after a transient failure
                if t.retries <= 0 or not self._may_retry(t, first):
                    raise
                retrier = self._retrier(t)
                try:
                    value = await retrier.arun(lambda: self._invoke(t, args), failed=first)
                finally:
                    attempts, outcome = retrier.attempts, retrier.outcome()
            content, attachments = render_output(value)
            # where a result enters the conversation: whole (before any cut), so the trajectory, events and
            # RunResult never hold a secret the tool echoed (an API that returns the request's headers)
            return ToolResult(
                call_id=call.id, name=call.name, ok=True, content=redact(content), attachments=attachments,
                duration_s=time.perf_counter() - start, attempts=max(attempts, 1),
            )
        except ToolError as e:
            return self._failure(call, e, start, attempts, outcome)
        except KeyeAgentError as e:
            return self._failure(call, e, start, attempts, outcome)
        except Exception as e:  # noqa: BLE001 - a tool's own bug goes back to the model as its type and message
            return self._failure(call, e, start, attempts, outcome)

    def _failure(self, call: ToolCall, e: BaseException, start: float, attempts: int, outcome: str = "") -> ToolResult:
        if isinstance(e, KeyeAgentError):
            msg = str(e)
        else:
            msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if outcome:
            msg += f" ({outcome})"
        return ToolResult(
            call_id=call.id, name=call.name, ok=False, error=sanitize_message(msg), error_type=type(e).__name__,
            error_kind=tool_error_kind(e), duration_s=time.perf_counter() - start, attempts=max(attempts, 1),
        )

    @staticmethod
    def _may_retry(t: Tool, exc: BaseException) -> bool:
        """A transient fault, except a timeout of a tool that changes state: its first attempt may have done the
        change (a sync tool even runs on after its timeout), so a second one could do it twice."""
        if t.mutates_state and isinstance(exc, ToolTimeoutError):
            return False
        return is_transient(exc)

    def _retrier(self, t: Tool) -> Retrier:
        """The retry state of one call of ``t``: a wait is never longer than the tool's own limit (its
        ``max_retry_wait_s``, else its timeout): a server that asks for more gets the error back at once, not a
        sleep the caller outlives."""
        limit = t.max_retry_wait_s if t.max_retry_wait_s is not None else t.timeout_s
        cap = self.max_retry_after_s if limit is None else min(self.max_retry_after_s, limit)
        backoff = Backoff(base_s=self.backoff_base_s, max_s=min(self.backoff_max_s, cap), max_retry_after_s=cap)
        return Retrier(backoff, attempts=1 + t.retries, transient=lambda e: self._may_retry(t, e))

    async def _invoke(self, t: Tool, args: dict[str, Any]) -> Any:
        if t.is_async:
            aw = t.fn(**args)
        elif t.inline:
            return t.fn(**args)
        else:
            eager = EAGER_WAIT_S if t.timeout_s is None or t.timeout_s > EAGER_WAIT_S else 0.0
            aw = _POOL.run_async(t.fn, eager_s=eager, **args)
            if aw.done():  # it finished within the eager wait: no timer, no trip through the loop
                return aw.result()
        if t.timeout_s is None:
            return await aw
        try:
            async with asyncio.timeout(t.timeout_s):  # no extra task, unlike wait_for
                return await aw
        except TimeoutError:
            raise ToolTimeoutError(
                f"tool {t.name!r} did not finish within {t.timeout_s:g} s", tool=t.name, timeout_s=t.timeout_s
            ) from None

    async def dispatch(self, calls: Sequence[ToolCall], *, approve: ApprovalCallback | None = None) -> list[ToolResult]:
        """Run the calls of one model turn; results in the order of the calls.

        Calls to tools that do not mutate state run concurrently; a state-changing call is a barrier, run alone, in
        its place in the order, so the model's intended sequence of writes is kept.
        """
        if len(calls) == 1:
            return [await self.call(calls[0], approve=approve)]
        results: list[ToolResult | None] = [None] * len(calls)
        sem = asyncio.Semaphore(self.max_concurrency)

        async def one(i: int) -> None:
            async with sem:
                results[i] = await self.call(calls[i], approve=approve)

        batch: list[int] = []
        for i, c in enumerate(calls):
            t = self._tools.get(c.name)
            if t is not None and t.mutates_state:
                if batch:
                    await asyncio.gather(*(one(j) for j in batch))
                    batch = []
                await one(i)
            else:
                batch.append(i)
        if batch:
            await asyncio.gather(*(one(j) for j in batch))
        return [r for r in results if r is not None]

    def dispatch_sync(self, calls: Sequence[ToolCall], *, approve: ApprovalCallback | None = None) -> list[ToolResult]:
        return run_sync(self.dispatch(calls, approve=approve))

    # -- lifecycle: tools that own resources (a sandbox, a client session) release them here ------------------

    def close(self) -> None:
        """Close every tool (see :meth:`Tool.close`); idempotent. Every tool is closed even when one fails; then
        the first failure is raised. Registries made by :meth:`with_tools` share tools, so closing either closes
        them."""
        errors = []
        for t in list(self._tools.values()):
            try:
                t.close()
            except Exception as e:  # noqa: BLE001 - the others must still be closed; the first is raised below
                errors.append(e)
        _raise_first(errors)

    async def aclose(self) -> None:
        """:meth:`close` for async code: async closers are awaited, sync ones run in a worker thread."""
        results = await asyncio.gather(*(t.aclose() for t in list(self._tools.values())), return_exceptions=True)
        _raise_first([r for r in results if isinstance(r, BaseException)])

    def __enter__(self) -> ToolRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ToolRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _raise_first(errors: Sequence[BaseException]) -> None:
    if errors:
        raise errors[0]
