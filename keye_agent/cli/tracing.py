"""``--trace otlp|console`` of `run`, `chat` and `tau run`: an OpenTelemetry tracer provider for the command's
runs, flushed and shut down when the command ends (see :mod:`keye_agent.trace`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

TraceOpt = Annotated[str | None, typer.Option(
    "--trace", help="Export OpenTelemetry spans of each run: otlp (to $OTEL_EXPORTER_OTLP_ENDPOINT, default "
                    "http://localhost:4318) or console (JSON on stderr). Needs the trace extra.")]


def open_tracer(kind: str | None) -> Any:
    """The tracer provider for ``--trace KIND`` (None without it); checked before anything slow starts, so a
    bad value or a missing SDK fails at once. Give it back to :func:`close_tracer`."""
    if kind is None:
        return None
    if kind not in ("otlp", "console"):
        raise typer.BadParameter(f"{kind!r} is not one of otlp, console", param_hint="--trace")
    from keye_agent.trace import make_tracer_provider

    return make_tracer_provider(kind)


def close_tracer(provider: Any) -> None:
    """Flush the spans still queued and stop the exporter."""
    if provider is not None:
        provider.shutdown()
