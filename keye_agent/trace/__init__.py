"""Seeing a run: OpenTelemetry spans of runs, steps, model calls and tool calls (GenAI semantic conventions).

``Agent(model, tools, tracer=TRACER_OR_PROVIDER)`` traces every run of that agent; :func:`make_tracer_provider`
builds the exporter the CLI's ``--trace otlp|console`` uses. Needs the ``trace`` extra (``opentelemetry-sdk`` and
the OTLP/HTTP exporter); nothing here is imported by a run without a tracer.
"""

from .setup import TRACE_KINDS, make_tracer_provider
from .spans import RunSpans

__all__ = ["TRACE_KINDS", "RunSpans", "make_tracer_provider"]
