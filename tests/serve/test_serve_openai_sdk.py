"""The official `openai` SDK against `keye-agent serve`'s app on a real uvicorn server (loopback, a free port) over
the tiny Keye model: sync and async clients, streams (text, tool-call deltas, usage), tools with every
tool_choice, stop strings, seeds, a conversation with tool calls and results in its history."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import openai
import pytest
from serve_fixtures import MODEL, TIME, WEATHER

HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def client(api):
    return openai.OpenAI(base_url=api, api_key="unused", max_retries=0, timeout=120)


def _args_valid(call, tool) -> dict:
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, tool["function"]["parameters"])
    return args


def test_models_lists_the_served_model(client, tiny):
    [m] = client.models.list().data
    assert m.id == MODEL and m.owned_by == "keye-agent"
    assert m.model_extra["max_model_len"] == tiny.context_window


def test_a_whole_answer_has_text_and_usage(client):
    r = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=8, temperature=0)
    [choice] = r.choices
    assert r.object == "chat.completion" and r.model == MODEL and r.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("length", "stop") and not choice.message.tool_calls
    u = r.usage
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 8 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    # max_completion_tokens is the newer name of the same limit
    r2 = client.chat.completions.create(model=MODEL, messages=HI, max_completion_tokens=3, temperature=0)
    assert r2.usage.completion_tokens <= 3


def test_a_stream_carries_the_same_greedy_text_and_its_usage(client):
    whole = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model=MODEL, messages=HI, max_tokens=12, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_a_stream_without_include_usage_has_no_usage(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, temperature=0, stream=True))
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason


def test_required_tool_choice_gives_a_call_that_fits_the_schema(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Weather in Rome?"}],
                                       tools=[WEATHER], tool_choice="required", max_tokens=64)
    [choice] = r.choices
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert _args_valid(call, WEATHER)["city"] in ("Paris", "Rome", "Oslo")


def test_a_named_tool_choice_calls_that_tool(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What time is it?"}],
                                       tools=[WEATHER, TIME], max_tokens=64,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = r.choices[0].message.tool_calls
    assert calls and all(c.function.name == "get_time" for c in calls)
    for c in calls:
        _args_valid(c, TIME)


def test_tool_choice_none_answers_in_text(client):
    r = client.chat.completions.create(model=MODEL, messages=HI, tools=[WEATHER], tool_choice="none", max_tokens=6,
                                       temperature=0)
    assert not r.choices[0].message.tool_calls and r.choices[0].finish_reason != "tool_calls"


def test_streamed_tool_calls_assemble_in_the_sdk(client):
    """The SDK's own stream helper accumulates the tool-call deltas into the final message."""
    with client.chat.completions.stream(model=MODEL, messages=[{"role": "user", "content": "Weather?"}],
                                        tools=[WEATHER], tool_choice="required", max_tokens=64,
                                        stream_options={"include_usage": True}) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and _args_valid(call, WEATHER)
    assert final.choices[0].finish_reason == "tool_calls" and final.usage.completion_tokens > 0
    assert "tool_calls.function.arguments.done" in events


def test_raw_stream_tool_call_deltas_have_the_openai_shape(client):
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=64, stream=True))
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    first = deltas[0]
    assert first.index == 0 and first.id and first.type == "function" and first.function.name == "get_weather"
    assert all(d.id is None and d.function.name is None for d in deltas[1:] if d.index == 0)
    args = "".join(d.function.arguments or "" for d in deltas if d.index == 0)
    jsonschema.validate(json.loads(args), WEATHER["function"]["parameters"])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_history_with_tool_calls_and_results_is_accepted(client):
    messages = [
        {"role": "system", "content": "You report the weather."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "4 C, rain"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], max_tokens=6, temperature=0,
                                       tool_choice="none")
    assert r.choices[0].message.content is not None and r.usage.prompt_tokens > 20


def test_a_stop_string_cuts_the_answer(client):
    whole = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=16, temperature=0)
    text = whole.choices[0].message.content
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=16, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == text[:text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_a_seed_repeats_a_sampled_answer(client):
    def ask(seed):
        return client.chat.completions.create(model=MODEL, messages=HI, max_tokens=10, temperature=1.0, top_p=0.9,
                                              seed=seed).choices[0].message.content
    assert ask(7) == ask(7)


def test_the_async_client_runs_requests_concurrently(api):
    async def go():
        async with openai.AsyncOpenAI(base_url=api, api_key="unused", max_retries=0, timeout=120) as aclient:
            async def one(i: int):
                return await aclient.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=5, temperature=0)
            return await asyncio.gather(*(one(i) for i in range(4)))
    answers = asyncio.run(go())
    assert len({a.id for a in answers}) == 4
    assert all(a.usage.completion_tokens <= 5 and a.choices[0].message.content is not None for a in answers)
