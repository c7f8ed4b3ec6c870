"""Running the tool calls of one model turn: the ``final_answer`` tool, repeats of failed calls, and duplicates."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from keye_agent.faults import ToolErrorKind
from keye_agent.tools import Tool, ToolRegistry
from keye_agent.tools.registry import ApprovalCallback
from keye_agent.types import ToolCall, ToolResult

from .prompts import FINAL_ANSWER_TOOL, repeated_call_message

DUPLICATE_NOTE = "[same call as an earlier one in this turn: it ran once; its result is repeated here]\n"


def call_key(call: ToolCall) -> str:
    """Identity of a call: its tool and its arguments, key order ignored."""
    return call.name + "\x00" + json.dumps(call.arguments, sort_keys=True, default=str)


@functools.cache
def final_answer_tool() -> Tool:
    """One shared instance: building a Tool checks its schema, which costs a millisecond per agent otherwise."""

    def final_answer(answer: str) -> str:
        return answer

    return Tool(
        name=FINAL_ANSWER_TOOL,
        description="Give the final answer to the task and end the run. Call it alone, once you are done.",
        parameters={
            "type": "object",
            "properties": {"answer": {"type": "string", "description": "The complete final answer for the user."}},
            "required": ["answer"],
            "additionalProperties": False,
        },
        fn=final_answer,
        inline=True,
        timeout_s=None,
        retries=0,
    )


async def run_turn_calls(
    registry: ToolRegistry,
    calls: list[ToolCall],
    failed: dict[str, tuple[int, str]],
    approve: ApprovalCallback | None,
    guard: Callable[[Awaitable[list[ToolResult]]], Awaitable[list[ToolResult]]],
) -> list[ToolResult]:
    """Dispatch the calls of one turn; one result per call, in order.

    Exact repeats of calls that already failed (``failed``: call key -> (step, error)) are not run: the model is told
    instead. Exact duplicates within the turn of a tool that does not change state run once, and each copy gets that
    result, with a note. ``guard`` wraps the dispatch (the agent's wall-clock budget).
    """
    if len(calls) == 1 and not failed:  # the common case: nothing to look up, no duplicate possible
        return await guard(registry.dispatch(calls, approve=approve))
    to_run: list[ToolCall] = []
    fixed: dict[int, ToolResult] = {}
    first_of: dict[str, int] = {}  # call key -> index in to_run
    runs_as: dict[int, int] = {}  # index in calls -> index in to_run
    for i, c in enumerate(calls):
        key = call_key(c)
        prev = failed.get(key)
        if prev is not None:
            fixed[i] = ToolResult(call_id=c.id, name=c.name, ok=False, error_type="RepeatedCallError",
                                  error_kind=ToolErrorKind.REPEATED, error=repeated_call_message(c, prev[0], prev[1]))
            continue
        t = registry.find(c.name)
        if key in first_of and t is not None and not t.mutates_state:
            runs_as[i] = first_of[key]
            continue
        first_of.setdefault(key, len(to_run))
        runs_as[i] = len(to_run)
        to_run.append(c)
    ran: list[ToolResult] = await guard(registry.dispatch(to_run, approve=approve)) if to_run else []
    out: list[ToolResult] = []
    used: set[int] = set()
    for i, c in enumerate(calls):
        if i in fixed:
            out.append(fixed[i])
            continue
        r = ran[runs_as[i]]
        if runs_as[i] in used:
            update: dict[str, Any] = {"call_id": c.id, "duration_s": 0.0}
            if r.ok:
                update["content"] = DUPLICATE_NOTE + r.content
            r = r.model_copy(update=update)
        used.add(runs_as[i])
        out.append(r)
    return out
