"""The words the loop says to the model when something needs correcting. Each names what went wrong and what to
do instead: a local model recovers from a precise message far more often than from a generic "error". None of
them points to a tool the run did not offer."""

from __future__ import annotations

from collections.abc import Collection

from keye_agent.faults import ToolErrorKind
from keye_agent.types import ToolCall, ToolResult

FINAL_ANSWER_TOOL = "final_answer"

NEUTRAL_HOW_TO_CALL = (
    "Write each tool call in the tool-calling format you were given, with the arguments as one valid JSON object "
    "(double quotes, no trailing commas), or answer in plain text."
)
"""How to call, for a backend that names no call format: it mentions no tags."""

PLAN_REQUEST = (
    "Before your next action, write a short plan: what is done so far, what remains, and the next tool call you "
    "will make. Do not call any tool in this reply."
)


def _final_answer_ways(offered: Collection[str]) -> str:
    if FINAL_ANSWER_TOOL in offered:
        return f"give your final answer as plain text (or through the {FINAL_ANSWER_TOOL} tool)"
    return "give your final answer as plain text"


def empty_answer(offered: Collection[str]) -> str:
    if not offered:
        return "Your last reply was empty: it had no text. Give your final answer as plain text."
    return ("Your last reply was empty: it had neither text nor a tool call. Either call a tool, or "
            f"{_final_answer_ways(offered)}.")


def truncated_answer(offered: Collection[str]) -> str:
    more = ", or continue with a tool call" if offered else ""
    return ("Your last reply was cut off at the token limit, so it cannot be the final answer. Give a shorter, "
            f"complete final answer{more}.")


def malformed_message(problems: list[str], how_to_call: str) -> str:
    """What went wrong, then the backend's call format's own words on how to call (see ``CallFormat``)."""
    body = "\n".join(f"- {e}" for e in problems)
    return f"Your last reply contained a tool call that could not be parsed:\n{body}\n{how_to_call}"


def final_rejected(objection: str) -> str:
    return f"Your final answer was not accepted: {objection}"


_HINTS = {
    ToolErrorKind.NOT_FOUND: "Call one of the available tools listed in the error, or answer in plain text.",
    ToolErrorKind.INVALID_ARGUMENTS: "Fix the arguments so they match the tool's schema, then call it again.",
    ToolErrorKind.TIMEOUT: "The tool took too long. Try a smaller or simpler request, or a different approach.",
    ToolErrorKind.DENIED: "The user refused this action. Do not repeat it; ask the user or choose another way.",
    ToolErrorKind.REPEATED: "Change the arguments or use a different tool.",
    ToolErrorKind.FAILED: "Read the error, then change the arguments or your approach; do not repeat the same call "
                          "unchanged.",
}


def correction_for(result: ToolResult, kind: ToolErrorKind) -> str:
    """The tool message the model sees for a failed call: the error as the tool raised it, and a hint for its kind."""
    return f"Error ({result.error_type}): {result.error_detail}\n{_HINTS[kind]}"


def repeated_call_message(call: ToolCall, step: int, error: str) -> str:
    first_line = " ".join((error or "an error").split())[:300]
    return (
        f"this exact call ({call.name} with the same arguments) already failed at step {step} with: {first_line}. "
        "Repeating it unchanged will fail again."
    )
