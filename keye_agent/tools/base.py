"""`Tool`: a named callable with a JSON Schema for its arguments, and `ToolOutput` for rich results."""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from jsonschema import Draft202012Validator

from keye_agent._sync import run_sync
from keye_agent.errors import ToolDefinitionError
from keye_agent.types import ImagePart

from .schema_check import check_parameters

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass
class ToolOutput:
    """What a tool may return when plain text is not enough: text for the model plus image attachments."""

    content: str
    attachments: list[ImagePart] = field(default_factory=list)


@dataclass
class Tool:
    """A tool the model can call.

    ``parameters`` is a JSON Schema (draft 2020-12) of an object; ``fn`` takes the arguments as keywords and may be
    sync or async. Sync functions run in a worker thread (so timeouts hold and the loop stays responsive) unless
    ``inline`` is set, for trivial pure functions where a thread hop would cost more than the work.

    Example::

        Tool(name="add", description="Add two integers.",
             parameters={"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                         "required": ["a", "b"]},
             fn=lambda a, b: a + b)

    A tool that owns a resource names its release in ``on_close``; :meth:`close` (or :meth:`aclose`, or closing the
    :class:`ToolRegistry` that holds it) runs it once.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    timeout_s: float | None = 60.0
    """Wall-clock limit of one attempt; None for no limit."""
    retries: int = 2
    """Extra attempts after a transient failure (ToolExecutionError(transient=True) or a timeout)."""
    max_retry_wait_s: float | None = None
    """The longest wait between attempts (a server asking for longer gets its error back at once); None: the
    tool's ``timeout_s``, so a wait never outlives the call it serves."""
    mutates_state: bool = False
    """Changes the world (writes, orders, deletes): such calls run one at a time, in order, and may need approval."""
    requires_approval: bool | None = None
    """None: approval is asked for exactly when ``mutates_state`` is set and the agent has an approval callback."""
    inline: bool = False
    """Run a sync ``fn`` on the event loop thread: no thread hop, no timeout enforcement."""
    coerce: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Turns validated JSON arguments into Python values (pydantic models, enums) before the call."""
    metadata: dict[str, Any] = field(default_factory=dict)
    on_close: Callable[[], Any] | None = None
    """Releases what the tool owns (a sandbox, a client session), sync or async; run once by :meth:`close` or
    :meth:`aclose`. Tools that share one resource may each name it: its own close should be idempotent too."""
    _closed: bool = field(default=False, init=False, repr=False, compare=False)
    _close_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ToolDefinitionError(
                f"tool name {self.name!r} is not valid: use letters, digits, '_', '.', '-', starting with a letter "
                "or '_', at most 64 characters"
            )
        if not self.description or not self.description.strip():
            raise ToolDefinitionError(f"tool {self.name!r} has no description; the model needs one to use it")
        if self.parameters.get("type") != "object":
            raise ToolDefinitionError(
                f"tool {self.name!r}: parameters must be a JSON Schema of type 'object', got {self.parameters.get('type')!r}"
            )
        check_parameters(self.name, self.parameters)
        if self.timeout_s is not None and not (isinstance(self.timeout_s, int | float) and 0 < self.timeout_s < math.inf):
            raise ToolDefinitionError(f"tool {self.name!r}: timeout_s must be a positive finite number of seconds, "
                                      f"got {self.timeout_s!r}", hint="e.g. timeout_s=30, or None for no limit")
        if not callable(self.fn):
            raise ToolDefinitionError(f"tool {self.name!r}: fn is not callable")

    @cached_property
    def is_async(self) -> bool:
        fn = self.fn
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    @cached_property
    def validator(self) -> Draft202012Validator:
        return Draft202012Validator(self.parameters)

    @cached_property
    def fast_validator(self) -> Any | None:
        """jsonschema-rs's validator of the same schema, for the common case (valid arguments; its cost is the
        "validation only" row of benchmarks/agent_overhead.py): a call it refuses, or cannot read, goes to
        :attr:`validator`, which words the errors. Formats are annotations, as in jsonschema; nothing is fetched. None where it cannot be built."""
        try:
            import jsonschema_rs
            return jsonschema_rs.Draft202012Validator(self.parameters, validate_formats=False, offline=True)
        except Exception:  # noqa: BLE001 - not installed, an older version, a schema it cannot read: the slow path
            return None

    @property
    def needs_approval(self) -> bool:
        return self.mutates_state if self.requires_approval is None else self.requires_approval

    def openai_schema(self) -> dict[str, Any]:
        """The tool in OpenAI function-calling format."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def __call__(self, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no retries)."""
        return self.fn(**kwargs)

    @property
    def closed(self) -> bool:
        return self._closed

    def _take_closer(self) -> Callable[[], Any] | None:
        with self._close_lock:
            if self._closed:
                return None
            self._closed = True
            return self.on_close

    def close(self) -> None:
        """Release what the tool owns (its ``on_close``); later calls do nothing. An async ``on_close`` runs to
        completion here when no event loop is running; inside one, ``await tool.aclose()`` instead."""
        closer = self._take_closer()
        if closer is None:
            return
        result = closer()
        if not inspect.isawaitable(result):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            run_sync(_awaited(result))
            return
        if inspect.iscoroutine(result):
            result.close()  # never started: the resource is untouched and can still be closed with aclose()
        with self._close_lock:
            self._closed = False
        raise RuntimeError(f"tool {self.name!r} closes asynchronously: call `await tool.aclose()` inside an event "
                           "loop")

    async def aclose(self) -> None:
        """Release what the tool owns; later calls do nothing. A sync ``on_close`` runs in a worker thread, so a
        slow teardown (removing a container) does not stall the event loop."""
        closer = self._take_closer()
        if closer is None:
            return
        if inspect.iscoroutinefunction(closer):
            await closer()
            return
        result = await asyncio.to_thread(closer)
        if inspect.isawaitable(result):
            await result


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def render_output(value: Any) -> tuple[str, list[ImagePart]]:
    """Turn what a tool returned into (text for the model, attachments)."""
    if isinstance(value, ToolOutput):
        return value.content, list(value.attachments)
    if isinstance(value, str):
        return value, []
    if value is None:
        return "", []
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    try:
        return json.dumps(value, ensure_ascii=False, default=str), []
    except (TypeError, ValueError):
        return str(value), []
