"""Where spans go: ``--trace otlp`` (an OTLP/HTTP collector: ``OTEL_EXPORTER_OTLP_ENDPOINT``, default
http://localhost:4318) or ``--trace console`` (each span as JSON on stderr, so ``--json`` output stays clean).

    provider = make_tracer_provider("otlp")
    agent = Agent(model, tools, tracer=provider)
    ...
    provider.shutdown()   # flushes the spans still queued
"""

from __future__ import annotations

import sys
from typing import Literal, TextIO

from keye_agent.errors import ConfigError

TraceKind = Literal["otlp", "console"]
TRACE_KINDS: tuple[str, ...] = ("otlp", "console")
SERVICE_NAME = "keye-agent"


def make_tracer_provider(kind: str, *, out: TextIO | None = None, service_name: str = SERVICE_NAME):  # type: ignore[no-untyped-def]
    """A ``TracerProvider`` exporting to ``kind``; the caller shuts it down (which flushes it) at the end.

    The OTLP exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, timeout);
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` set the resource, as in any OpenTelemetry program."""
    if kind not in TRACE_KINDS:
        raise ConfigError(f"unknown trace exporter {kind!r}", hint="use --trace otlp or --trace console")
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError as e:
        raise ConfigError(f"tracing needs the OpenTelemetry SDK ({e.name} is not installed)",
                          hint="pip install 'keye-agent[trace]'") from None
    import os

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    if kind == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out or sys.stderr)))
        return provider
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as e:
        raise ConfigError(f"--trace otlp needs the OTLP/HTTP exporter ({e.name} is not installed)",
                          hint="pip install 'keye-agent[trace]'") from None
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
