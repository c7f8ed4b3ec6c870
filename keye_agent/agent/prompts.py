"""The words the loop says to the model when something needs correcting. Each names what went wrong and what to
do instead: a local model recovers from a precise message far more often than from a generic "error"."""

from __future__ import annotations

from keye_agent.types import ToolCall, ToolResult

FINAL_ANSWER_TOOL = "final_answer"

EMPTY_ANSWER = (
    "Your last reply was empty: it had neither text nor a tool call. Either call a tool, or give your final answer "
    "as plain text (or through the final_answer tool)."
)

TRUNCATED_ANSWER = (
    "Your last reply was cut off at the token limit, so it cannot be the final answer. Give a shorter, complete "
    "final answer, or continue with a tool call."
)

PLAN_REQUEST = (
    "Before your next action, write a short plan: what is done so far, what remains, and the next tool call you "
    "will make. Do not call any tool in this reply."
)

_HINTS = {
    "ToolNotFoundError": "Call one of the available tools listed in the error, or answer in plain text.",
    "ToolValidationError": "Fix the arguments so they match the tool's schema, then call it again.",
    "ToolTimeoutError": "The tool took too long. Try a smaller or simpler request, or a different approach.",
    "ToolApprovalDenied": "The user refused this action. Do not repeat it; ask the user or choose another way.",
    "RepeatedCallError": "Change the arguments or use a different tool.",
}
_DEFAULT_HINT = "Read the error, then change the arguments or your approach; do not repeat the same call unchanged."


def correction_for(result: ToolResult) -> str:
    """The tool message the model sees for a failed call."""
    hint = _HINTS.get(result.error_type or "", _DEFAULT_HINT)
    return f"Error ({result.error_type}): {result.error}\n{hint}"


def parse_error_message(errors: list[str]) -> str:
    body = "\n".join(f"- {e}" for e in errors)
    return (
        "Your last reply contained a tool call that could not be parsed:\n"
        f"{body}\n"
        "Write each call as <tool_call>\n{\"name\": \"TOOL_NAME\", \"arguments\": {...}}\n</tool_call> with valid JSON "
        "(double quotes, no trailing commas), or answer in plain text."
    )


def repeated_call_message(call: ToolCall, step: int, error: str) -> str:
    first_line = " ".join((error or "an error").split())[:300]
    return (
        f"this exact call ({call.name} with the same arguments) already failed at step {step} with: {first_line}. "
        "Repeating it unchanged will fail again."
    )
