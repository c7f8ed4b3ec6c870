"""The markup of the Qwen3/Hermes format, in one place (re-exported by :mod:`keye_agent.formats.hermes`)."""

from __future__ import annotations

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
