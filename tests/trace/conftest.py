"""Fixtures of the trace tests: a real OTLP/HTTP receiver on loopback (tests/trace/otlp_receiver.py)."""

from tests.trace.otlp_receiver import otlp_receiver  # noqa: F401  (a fixture: importing it registers it here)
