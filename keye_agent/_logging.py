"""Log records of keye-agent and of the HTTP stack under it (httpx, httpcore) pass through :func:`redact`.

httpx logs every request's full URL at INFO (an API key in the query string with it) and httpcore logs response
headers at DEBUG (a ``Location`` can carry a token). A filter on a logger does not see the records of its children
(``httpcore.http11``, ``keye_agent.backends.openai``), so the filter runs where every record is made: the log record
factory, wrapped once when the package is imported, for the loggers named in :data:`REDACTED_LOGGERS` and their
children. Installed whatever handlers the application sets up.
"""

from __future__ import annotations

import logging
from typing import Any

from keye_agent.errors import redact

__all__ = ["REDACTED_LOGGERS", "RedactingFilter", "install_log_redaction"]

REDACTED_LOGGERS = ("keye_agent", "httpx", "httpcore")


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments merged in) and its traceback text with secrets hidden; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: leave it to the handler to report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def _covered(name: str) -> bool:
    return any(name == n or name.startswith(n + ".") for n in REDACTED_LOGGERS)


def install_log_redaction() -> None:
    """Wrap the log record factory so records of :data:`REDACTED_LOGGERS` are redacted (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "keye_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _covered(record.name):
            _FILTER.filter(record)
        return record

    factory.keye_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
