"""A model behind an OpenAI-compatible server is never told to write tags: the planner loop words a malformed call
through OpenAIBackend's call format. Real loopback HTTP server (tests/backends/openai_test_server.py); only the
model's answers are scripted."""

from __future__ import annotations

from openai_test_server import ChatServer, Reply, completion

from keye_agent.agent import Agent
from keye_agent.backends.openai import OpenAIBackend
from keye_agent.tools import tool


@tool
def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name
    """
    return f"sunny in {city}"


def test_a_malformed_call_from_an_openai_server_is_corrected_without_tags() -> None:
    bad = '<tool_call>\n{"name": "get_weather", "arguments": {"city": Nice}}\n</tool_call>'
    with ChatServer([Reply(completion(bad)), Reply(completion("It is sunny."))]) as server:
        backend = OpenAIBackend("test-model", base_url=server.base_url, api_key="none", timeout=5.0)
        result = Agent(backend, [get_weather], stream_deltas=False).run("Weather in Nice?")
    assert result.status == "completed" and result.trajectory.steps[0].errors[0].kind == "malformed"
    sent = server.requests[1]["messages"][-1]
    assert sent["role"] == "user" and sent["content"].startswith("Your last reply contained a tool call that could")
    how = sent["content"].rsplit("\n", 1)[-1]
    assert "function calling" in how and "<" not in how and "tool_call" not in how
