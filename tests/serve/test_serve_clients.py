"""Other real clients of `keye-agent serve`: LiteLLM's ``completion`` (``model="openai/<name>"``, ``api_base``), as
tau2-bench's harness calls models, and our own ``OpenAIBackend`` (the ``openai:`` spec), alone and under the agent
loop; the server runs the tiny Keye model on a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Literal

import jsonschema
import pytest
from serve_fixtures import MODEL, TIME, WEATHER

from keye_agent.backends import load_model
from keye_agent.types import GenerationSettings, Message

# litellm's own pydantic models warn about their TypedDicts at import
pytestmark = pytest.mark.filterwarnings("ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning")

@pytest.fixture(scope="module")
def litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # its price list, not from the web at import
    return pytest.importorskip("litellm")


def test_litellm_completion_with_a_required_tool(api, litellm):
    r = litellm.completion(model=f"openai/{MODEL}", api_base=api, api_key="unused", max_tokens=64,
                           messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER],
                           tool_choice="required")
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and r.choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_litellm_streams_text(api, litellm):
    chunks = list(litellm.completion(model=f"openai/{MODEL}", api_base=api, api_key="unused", max_tokens=8,
                                     temperature=0, stream=True, messages=[{"role": "user", "content": "hi"}]))
    whole = litellm.completion(model=f"openai/{MODEL}", api_base=api, api_key="unused", max_tokens=8,
                               temperature=0, messages=[{"role": "user", "content": "hi"}])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content


def test_litellm_async_with_a_named_tool(api, litellm):
    async def go():
        return await litellm.acompletion(model=f"openai/{MODEL}", api_base=api, api_key="unused", max_tokens=64,
                                         messages=[{"role": "user", "content": "Time?"}], tools=[WEATHER, TIME],
                                         tool_choice={"type": "function", "function": {"name": "get_time"}})
    r = asyncio.run(go())
    assert [c.function.name for c in r.choices[0].message.tool_calls][0] == "get_time"


def test_our_openai_backend_streams_and_calls_tools_through_the_server(api):
    backend = load_model(f"openai:{MODEL}", base_url=api, context_window=8192)
    turn = backend.generate([Message.user("Weather?")], [WEATHER],
                            GenerationSettings(tool_choice="required", max_tokens=64))
    [call] = turn.tool_calls
    assert call.name == "get_weather" and call.arguments["city"] in ("Paris", "Rome", "Oslo")
    assert turn.finish_reason == "tool_calls" and turn.usage.completion_tokens > 0

    async def stream():
        return [c async for c in backend.astream([Message.user("hi")], None, GenerationSettings(max_tokens=6))]
    chunks = asyncio.run(stream())
    assert chunks[-1].kind == "done" and chunks[-1].turn.usage.completion_tokens <= 6
    assert "".join(c.text for c in chunks if c.kind == "text") == chunks[-1].turn.text


def test_the_agent_loop_runs_a_tool_through_the_server(api):
    from keye_agent.agent import Agent
    from keye_agent.tools import tool

    seen: list[str] = []

    @tool
    def get_weather(city: Literal["Paris", "Oslo"]) -> str:
        """The current weather of a city.

        Args:
            city: the city.
        """
        seen.append(city)
        return "4 C, rain"

    agent = Agent(load_model(f"openai:{MODEL}", base_url=api, context_window=8192), [get_weather],
                  final_answer_tool=False, first_tool_choice="get_weather", settings=GenerationSettings(max_tokens=48, temperature=0))
    result = agent.run("Weather in Oslo?", max_steps=2)
    first = result.trajectory.steps[0]
    assert first.turn is not None and first.turn.tool_calls[0].name == "get_weather"
    assert first.tool_results and first.tool_results[0].ok and seen


def test_serve_relays_another_server_through_the_openai_spec(api, tiny):
    """`keye-agent serve --model openai:NAME` in front of another server: answers pass through, the upstream's
    refusal of a long prompt stays a 400, and an upstream that is down is a 502."""
    import httpx
    import openai
    from serve_fixtures import serving

    relay_backend = load_model(f"openai:{MODEL}", base_url=api, context_window=10**6, max_retries=0)
    with serving(relay_backend, model_name="relayed") as relay:
        client = openai.OpenAI(base_url=relay, api_key="unused", max_retries=0, timeout=120)
        r = client.chat.completions.create(model="relayed", messages=[{"role": "user", "content": "Weather?"}],
                                           tools=[WEATHER], tool_choice="required", max_tokens=64)
        assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
        long = [{"role": "user", "content": "many words here " * tiny.context_window}]
        err = httpx.post(relay + "/chat/completions", json={"model": "relayed", "messages": long}, timeout=120)
        assert err.status_code == 400 and err.json()["error"]["code"] == "context_length_exceeded"
    down = load_model("openai:gone", base_url="http://127.0.0.1:9/v1", max_retries=0)
    with serving(down, model_name="gone") as relay:
        err = httpx.post(relay + "/chat/completions", json={"model": "gone", "messages": [{"role": "user",
                                                                                            "content": "hi"}]},
                         timeout=120)
        assert err.status_code == 502 and err.json()["error"]["code"] == "upstream_error"
