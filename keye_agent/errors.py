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
    ├── TransientError              one failed attempt that a retry may fix (timeout, connection, 429, 5xx)
    ├── NetworkPolicyError          a URL refused by the network policy (private address, bad scheme)
    ├── MediaError                  an image or video that cannot be read, or is past its size budget
    ├── RequestError                a request `keye-agent serve` refuses (HTTP status, the parameter at fault)
    └── TrajectoryError             a trajectory file that cannot be read

The split that matters to the planner loop: subclasses of :class:`ToolError` and :class:`ModelOutputError` are
the model's doing and go back to it as corrective messages; everything else is raised or ends the run with a status.
Messages never carry secrets: :class:`KeyeAgentError` passes every message and hint through :func:`redact`, the one
redaction point (tool results, trajectories, events, logs and CLI output go through it too).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import quote


class KeyeAgentError(Exception):
    """Root of every error keye-agent raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # the one place every error message passes: whatever built it, it carries no secret
        super().__init__(redact(message))
        if hint is not None:
            self.hint = redact(hint)

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
    """The tool raised. ``transient`` marks faults worth retrying (timeouts, 429/5xx, connection errors), which the
    registry retries like a :class:`TransientError`, waiting ``retry_after`` seconds when the server gave one."""

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
    """A tool is defined wrongly (missing type hint, missing docstring for an argument, bad schema).
    ``schema_path``: where in the tool's parameters schema the problem is (``("properties", "n", "default")``),
    when it is in the schema, so a YAML registry can point at its line."""

    def __init__(self, message: str, *, schema_path: tuple[str | int, ...] = (), hint: str | None = None) -> None:
        self.schema_path = tuple(schema_path)
        super().__init__(message, hint=hint)


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


class TransientError(KeyeAgentError):
    """One failed attempt that waiting and trying again may fix: a timeout, a refused or dropped connection, HTTP
    429 or 5xx. The retry helper (:mod:`keye_agent.retry`) retries it; callers turn the last one into their own
    error (a search backend's SearchError, the OpenAI backend's BackendConnectionError) when retries run out.

    ``retry_after``: seconds the server asked to wait (its Retry-After header), or None. ``kind``: "timeout",
    "connection", "rate_limited" or "server_error". ``status_code``: the HTTP status, when there was one. Tools
    mark the same faults with ``ToolExecutionError(transient=True)``, which the registry retries alike.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "connection",
        retry_after: float | None = None,
        status_code: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.kind = kind
        self.retry_after = retry_after
        self.status_code = status_code
        super().__init__(message, hint=hint)


class NetworkPolicyError(KeyeAgentError):
    """A URL refused by the network policy: a private/loopback/link-local address, or a bad scheme."""


class MediaError(KeyeAgentError, ValueError):
    """An image or video that cannot be used: unsupported or corrupt file, too large, past the token budget.

    ``source`` names the input (a path, a URL, or "bytes"); secrets never appear in it (data URLs are cut).
    """

    def __init__(self, message: str, *, source: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.source = source


class RequestError(KeyeAgentError):
    """A request the OpenAI-compatible server (:mod:`keye_agent.serve`) refuses, answered as OpenAI's error object
    ``{"error": {"message", "type", "param", "code"}}``. ``status``: the HTTP status (400 a bad parameter, 401 a bad
    key, 404 an unknown model, 413 a body past the limit, 429 a full queue); ``param``: the request field at fault
    (``messages[2].role``), or None; ``error_type`` and ``code``: OpenAI's ``type`` and ``code``; ``retry_after``: seconds
    for a Retry-After header."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None,
                 error_type: str = "invalid_request_error", retry_after: float | None = None,
                 hint: str | None = None) -> None:
        self.status, self.param, self.code, self.retry_after = status, param, code, retry_after
        self.error_type = error_type
        super().__init__(message, hint=hint)


class TrajectoryError(KeyeAgentError):
    """A trajectory file that cannot be read or replayed."""


_SECRET_MIN_LEN = 6
_PARTIAL_MIN_LEN = 8
# a name with a "_"-separated part that says credential: OPENAI_API_KEY, GITHUB_TOKEN, DB_PASSWORD, APIKEY;
# not KEYE_AGENT_CACHE_DIR, TOKENIZERS_PARALLELISM or MONKEY_COUNT
_SECRET_NAME = re.compile(r"(?:^|_)(?:[A-Z0-9]*APIKEY|KEY|[A-Z0-9]*TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|"
                          r"CREDENTIALS?|AUTH|AUTHORIZATION|COOKIE)S?(?:_|$)", re.IGNORECASE)
# credentials recognisable by their shape, whoever issued them: an auth scheme's token, a secret-named query parameter
_PATTERNS = (
    (re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1\2***"),
    (re.compile(r"([?&;](?:[\w.~-]*[_-])?(?:api[_-]?key|apikey|key|token|access[_-]?token|refresh[_-]?token|"
                r"secret|client[_-]?secret|password|passwd|pwd|auth|sig|signature|credentials?|session)=)"
                r"[^&#\s'\"<>\\]+", re.IGNORECASE), r"\1***"),
)
_CUT_AFTER = ("...", "\u2026", "'", '"')
_registered_secrets: set[str] = set()


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential (``*_KEY``, ``*_TOKEN``, ``*PASSWORD``...)."""
    return bool(_SECRET_NAME.search(name))


def register_secret(value: str) -> None:
    """Remember a value that must never appear in logs, errors, tool results or trajectories."""
    if value and len(value) >= _SECRET_MIN_LEN:
        _registered_secrets.add(value)


_secrets_cache: tuple[Any, int, list[str]] | None = None


def _known_secrets() -> list[str]:
    # redact() runs on every tool result: scan the environment again only when it changed (the raw mapping's
    # items compare by identity first, so the check costs a microsecond, the scan tens of them)
    global _secrets_cache
    env = getattr(os.environ, "_data", None)
    key = tuple(env.items()) if isinstance(env, dict) else tuple(os.environ.items())
    cache = _secrets_cache
    if cache is not None and cache[1] == len(_registered_secrets) and cache[0] == key:
        return cache[2]
    found = set(_registered_secrets)
    for name, value in os.environ.items():
        if value and len(value) >= _SECRET_MIN_LEN and _SECRET_NAME.search(name):
            found.add(value)
    spellings = set(found)
    for s in found:  # the same secret as it appears inside a URL or a JSON string
        spellings.add(quote(s, safe=""))
        spellings.add(json.dumps(s, ensure_ascii=False)[1:-1])
    result = sorted(spellings, key=len, reverse=True)
    _secrets_cache = (key, len(_registered_secrets), result)
    return result


def _is_cut_end(text: str, at: int) -> bool:
    return at == len(text) or text.startswith(_CUT_AFTER, at)


def _is_cut_start(text: str, at: int) -> bool:
    return at == 0 or text.endswith(_CUT_AFTER, 0, at)


def _redact_partial(text: str, secret: str) -> str:
    """Hide a piece of ``secret`` (8+ characters) where a cut ended or began inside it: a prefix at the end of the
    text or before a quote or an ellipsis, or a suffix at the start or after one."""
    head, tail = secret[:_PARTIAL_MIN_LEN], secret[-_PARTIAL_MIN_LEN:]
    spans: list[tuple[int, int]] = []
    i = text.find(head)
    while i >= 0:
        n = _PARTIAL_MIN_LEN
        while i + n < len(text) and n < len(secret) and text[i + n] == secret[n]:
            n += 1
        if _is_cut_end(text, i + n):
            spans.append((i, i + n))
        i = text.find(head, i + 1)
    j = text.find(tail)
    while j >= 0:
        end, n = j + _PARTIAL_MIN_LEN, _PARTIAL_MIN_LEN
        while j - 1 >= 0 and n < len(secret) and text[j - 1] == secret[-n - 1]:
            j, n = j - 1, n + 1
        if _is_cut_start(text, j):
            spans.append((j, end))
        j = text.find(tail, end)
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + "***" + text[end:]
    return text


def redact(text: str) -> str:
    """Hide every known secret with ``***``: registered values, values of secret-named environment variables
    (whole, URL- or JSON-escaped, or cut: 8+ characters of one where a cut ended or began), bearer tokens and
    secret-named query parameters. Redact before shortening text: :func:`shorten` does both in that order."""
    if not text:
        return text
    for s in _known_secrets():
        if s in text:
            text = text.replace(s, "***")
        if len(s) > _PARTIAL_MIN_LEN and (s[:_PARTIAL_MIN_LEN] in text or s[-_PARTIAL_MIN_LEN:] in text):
            text = _redact_partial(text, s)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def shorten(text: str, limit: int, *, marker: str = "...") -> str:
    """``text`` redacted, then cut to ``limit`` characters (``marker`` appended when cut)."""
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + marker
