"""The error tree of keye-agent.

Every error the package raises on purpose derives from :class:`KeyeAgentError`::

    KeyeAgentError
    ├── ConfigError                 bad configuration (a YAML file, a model config, CLI options)
    ├── ToolError                   something about a tool; the model caused it and may correct it
    │   ├── ToolNotFoundError       the model named a tool that is not registered
    │   ├── ToolValidationError     arguments that fail the tool's JSON Schema
    │   ├── ToolExecutionError      the tool ran and raised
    │   ├── ToolTimeoutError        the tool ran past its timeout
    │   └── ToolApprovalDenied      the approval callback refused the call
    ├── ToolDefinitionError         a tool defined wrongly (missing hint or docstring): a programming error
    ├── ModelError                  the model backend failed
    │   ├── ModelOutputError        the model's text could not be parsed (it may correct itself)
    │   ├── BackendConnectionError  the server could not be reached, or kept failing after retries
    │   └── ContextWindowError      the conversation cannot be fit into the model's window
    ├── SandboxError                the code sandbox could not start, run or clean up
    ├── SearchError                 a search backend failed
    ├── NetworkPolicyError          a URL refused by the network policy (private address, bad scheme)
    ├── MediaError                  an image or video that cannot be read, or is past its size budget
    └── TrajectoryError             a trajectory file that cannot be read

The split that matters to the planner loop: subclasses of :class:`ToolError` and :class:`ModelOutputError` are
the model's doing and go back to it as corrective messages; everything else is raised or ends the run with a status.
Messages never carry secrets: code that builds them from user data passes it through :func:`redact` first.
"""

from __future__ import annotations

import os
import re


class KeyeAgentError(Exception):
    """Root of every error keye-agent raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (hint: {self.hint})" if self.hint else base


class ConfigError(KeyeAgentError):
    """Invalid configuration. Carries the file, line and column when it came from a file."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.file, self.line, self.column = file, line, column
        where = ""
        if file is not None:
            where = f"{file}"
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        super().__init__(where + message, hint=hint)


class ToolError(KeyeAgentError):
    """A failed tool call that the model can correct. ``tool`` names the tool."""

    def __init__(self, message: str, *, tool: str | None = None, hint: str | None = None) -> None:
        self.tool = tool
        super().__init__(message, hint=hint)


class ToolNotFoundError(ToolError):
    """The model called a tool that is not registered."""


class ToolValidationError(ToolError):
    """Arguments that do not match the tool's schema. ``problems`` lists (path, message) pairs."""

    def __init__(self, message: str, *, tool: str | None = None, problems: list[tuple[str, str]] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message, tool=tool)


class ToolExecutionError(ToolError):
    """The tool raised. ``transient`` marks faults worth retrying (timeouts, 429/5xx, connection errors)."""

    def __init__(
        self, message: str, *, tool: str | None = None, transient: bool = False, retry_after: float | None = None
    ) -> None:
        self.transient = transient
        self.retry_after = retry_after
        super().__init__(message, tool=tool)


class ToolTimeoutError(ToolError):
    """The tool ran longer than its timeout."""

    def __init__(self, message: str, *, tool: str | None = None, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s
        super().__init__(message, tool=tool)


class ToolApprovalDenied(ToolError):
    """The approval callback refused a state-changing call."""


class ToolDefinitionError(KeyeAgentError):
    """A tool is defined wrongly (missing type hint, missing docstring for an argument, bad schema)."""


class ModelError(KeyeAgentError):
    """The model backend failed."""


class ModelOutputError(ModelError):
    """The model's output could not be parsed into text and tool calls. ``problems`` says what failed."""

    def __init__(self, message: str, *, problems: list[str] | None = None, raw: str | None = None) -> None:
        self.problems = problems or []
        self.raw = raw
        super().__init__(message)


class BackendConnectionError(ModelError):
    """The model server could not be reached or kept failing after retries."""

    def __init__(self, message: str, *, status_code: int | None = None, hint: str | None = None) -> None:
        self.status_code = status_code
        super().__init__(message, hint=hint)


class ContextWindowError(ModelError):
    """The conversation cannot be made to fit the model's context window."""


class SandboxError(KeyeAgentError):
    """The code sandbox could not start, run or clean up."""


class SearchError(KeyeAgentError):
    """A search backend failed (network unreachable, refused, rate limited after retries)."""


class NetworkPolicyError(KeyeAgentError):
    """A URL refused by the network policy: a private/loopback/link-local address, or a bad scheme."""


class MediaError(KeyeAgentError, ValueError):
    """An image or video that cannot be used: unsupported or corrupt file, too large, past the token budget.

    ``source`` names the input (a path, a URL, or "bytes"); secrets never appear in it (data URLs are cut).
    """

    def __init__(self, message: str, *, source: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.source = source


class TrajectoryError(KeyeAgentError):
    """A trajectory file that cannot be read or replayed."""


_SECRET_MIN_LEN = 6
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
_registered_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a value that must never appear in logs, errors or trajectories."""
    if value and len(value) >= _SECRET_MIN_LEN:
        _registered_secrets.add(value)


def redact(text: str) -> str:
    """Replace every known secret (registered ones and secret-looking environment variables) with ``***``."""
    if not text:
        return text
    secrets = set(_registered_secrets)
    for name, value in os.environ.items():
        if value and len(value) >= _SECRET_MIN_LEN and _SECRET_NAME.search(name):
            secrets.add(value)
    for s in sorted(secrets, key=len, reverse=True):
        if s in text:
            text = text.replace(s, "***")
    return text
