"""What the server makes of a backend's turn and of a request's settings, through a real server and the openai
SDK, with a scripted model (the package's replay backend: only the model is scripted): reasoning as
``reasoning_content``, text, tool calls, a call that did not parse shown as written (so a client's model can
correct it), and every sampling field reaching the backend as our GenerationSettings."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from serve_fixtures import MODEL, WEATHER, serving

from keye_agent.backends import load_model
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.errors import ModelError
from keye_agent.types import GenerationSettings, Message, StreamChunk

THOUGHT_AND_CALL = ('<think>The user wants Oslo.</think>Checking.\n<tool_call>\n{"name": "get_weather", '
                    '"arguments": {"city": "Oslo"}}\n</tool_call>')
CUT_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Os'
ASK = [{"role": "user", "content": "Weather in Oslo?"}]


def _client(api):
    return openai.OpenAI(base_url=api, api_key="unused", max_retries=0)


def test_reasoning_text_and_calls_in_a_whole_answer_and_a_stream():
    backend = ScriptedBackend([THOUGHT_AND_CALL, THOUGHT_AND_CALL])
    with serving(backend) as api:
        whole = _client(api).chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])
        chunks = list(_client(api).chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], stream=True))
    m = whole.choices[0].message
    assert m.model_extra["reasoning_content"] == "The user wants Oslo." and m.content.strip() == "Checking."
    assert [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls] == [("get_weather", {"city": "Oslo"})]
    assert whole.choices[0].finish_reason == "tool_calls"
    deltas = [c.choices[0].delta for c in chunks]
    assert "".join(d.model_extra.get("reasoning_content") or "" for d in deltas) == "The user wants Oslo."
    assert "".join(d.content or "" for d in deltas).strip() == "Checking."
    calls = [tc for d in deltas for tc in d.tool_calls or ()]
    assert calls[0].function.name == "get_weather" and json.loads("".join(c.function.arguments for c in calls)) == {
        "city": "Oslo"}


def test_a_call_that_did_not_parse_is_shown_as_written_and_our_client_sees_the_fault():
    backend = ScriptedBackend([CUT_CALL, CUT_CALL, CUT_CALL])
    with serving(backend) as api:
        whole = _client(api).chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])
        streamed = "".join(c.choices[0].delta.content or "" for c in _client(api).chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER], stream=True))
        turn = load_model(f"openai:{MODEL}", base_url=api).generate([Message.user("Weather in Oslo?")], [WEATHER])
    assert whole.choices[0].message.content == CUT_CALL == streamed and not whole.choices[0].message.tool_calls
    assert not turn.tool_calls and turn.parse_errors  # the client's planner loop can send it back to the model


def test_request_fields_reach_the_backend_as_generation_settings():
    backend = ScriptedBackend(["fine", "fine", "fine"])
    with serving(backend) as api:
        client = _client(api)
        client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=7, temperature=0.3, top_p=0.5,
                                       seed=11, stop="END", tools=[WEATHER],
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                       extra_body={"top_k": 20, "repetition_penalty": 1.1,
                                                   "chat_template_kwargs": {"enable_thinking": False}})
        client.chat.completions.create(model=MODEL, messages=[{"role": "developer", "content": "Be brief."}, *ASK])
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5, stop=["a", "b"],
                                       extra_body={"top_k": -1})
    (n1, s1), (n2, s2), (_, s3) = backend.requests
    assert s1 == GenerationSettings(max_tokens=7, temperature=0.3, top_p=0.5, top_k=20, repetition_penalty=1.1,
                                    stop=["END"], tool_choice="get_weather", seed=11, enable_thinking=False)
    assert n1 == 1 and n2 == 2
    assert (s2.temperature, s2.top_p, s2.max_tokens, s2.tool_choice) == (1.0, 1.0, 4096, "auto")  # OpenAI's defaults
    assert (s3.max_tokens, s3.stop, s3.top_k) == (5, ["a", "b"], 0)


class _Buggy(ScriptedBackend):
    """A scripted model that hits a bug (not one of our errors) before it answers."""

    async def astream(self, messages, tools, settings):
        raise RuntimeError("index out of range in the sampler")
        yield  # an async generator


class _BreaksMidStream(ScriptedBackend):
    """A scripted model whose stream fails after its first words (a backend fault after the response began)."""

    async def astream(self, messages, tools, settings):
        yield StreamChunk("text", "Let me ")
        raise ModelError("the model process died")


def test_a_backend_failure_is_a_500_error_object_or_an_error_event_mid_stream():
    with serving(ScriptedBackend([])) as api:  # a script with no turns fails at once
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as e:
                list(_client(api).chat.completions.create(model=MODEL, messages=ASK, stream=stream) or [])
            assert e.value.body["code"] == "model_error" and "ran out of turns" in e.value.body["message"]
    with serving(_Buggy(["unused"])) as api:
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as e:
                list(_client(api).chat.completions.create(model=MODEL, messages=ASK, stream=stream) or [])
            assert e.value.body["code"] == "internal_error" and "RuntimeError: index out of range" in e.value.body[
                "message"]
    with serving(_BreaksMidStream(["unused"])) as api:
        chunks = []
        with pytest.raises(openai.APIError, match="the model process died"):
            for chunk in _client(api).chat.completions.create(model=MODEL, messages=ASK, stream=True):
                chunks.append(chunk)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Let me "
        assert httpx.get(api.removesuffix("/v1") + "/health").json()["active"] == 0
