"""Conformance of OpenAIBackend with the documented behaviour of the common OpenAI-compatible servers.

Each dialect is a real HTTP server on loopback (tests/backends/openai_test_server.py) answering with the event
shapes that server is documented to send; every quirk names where it is documented. What is reproduced is the
wire shape only, not the servers themselves (their real counterpart for llama.cpp is tests/backends/
test_llama_cpp_server.py). Each test states what a client must get out of that shape.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from openai_test_server import ChatServer, Reply

from keye_agent.backends.openai import OpenAIBackend
from keye_agent.errors import BackendConnectionError, ConfigError
from keye_agent.types import GenerationSettings, Message, ToolCall

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
MSGS = [Message.user("Weather in Oslo?")]


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices, **extra}


def _call_delta(index: int | None = None, id: Any = None, name: str | None = None,
                arguments: Any = None) -> dict[str, Any]:
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if arguments is not None:
        fn["arguments"] = arguments
    tc: dict[str, Any] = {"type": "function", "function": fn}
    if index is not None:
        tc["index"] = index
    if id is not None:
        tc["id"] = id
    return {"tool_calls": [tc]}


def _stream(events: list[Any], *, settings: GenerationSettings | None = None, **opts: Any):
    with ChatServer([Reply(events=events)]) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, max_retries=0, **opts)

        async def go():
            chunks = [c async for c in backend.astream(MSGS, TOOLS, settings or GenerationSettings())]
            await backend.aclose()
            return chunks

        chunks = asyncio.run(go())
    return chunks[-1].turn, chunks, server


def _calls(turn) -> list[tuple[str, dict[str, Any]]]:
    return [(c.name, c.arguments) for c in turn.tool_calls]


# ---- llama.cpp ------------------------------------------------------------------------------------------------

def test_llama_cpp_python_repeats_the_name_and_id_in_every_delta():
    """llama-cpp-python's chatml-function-calling stream repeats ``function.name`` and ``id`` in each delta
    (reported in issue 20 of this project, seen against its server 0.3.x)."""
    cid = "call__0_get_weather_cmpl-7f"
    events = [_chunk({"role": "assistant", "content": None}),
              _chunk(_call_delta(0, cid, "get_weather", '{"city": ')),
              _chunk(_call_delta(0, cid, "get_weather", '"Oslo"}')),
              _chunk({}, "tool_calls")]
    turn, _, _ = _stream(events)
    assert _calls(turn) == [("get_weather", {"city": "Oslo"})]
    assert turn.tool_calls[0].id == cid and turn.parse_errors == []


def test_llama_server_streams_id_and_name_first_then_argument_fragments_and_reasoning_content():
    """llama.cpp's llama-server with --jinja streams the id and name in the first tool-call delta and the
    arguments in fragments (ggml-org/llama.cpp#12379), reasoning in ``reasoning_content`` (ggml-org/llama.cpp#11607),
    and adds a ``timings`` object to chunks."""
    timings = {"prompt_n": 10, "predicted_n": 5}
    events = [_chunk({"role": "assistant", "reasoning_content": "The user wants "}, timings=timings),
              _chunk({"reasoning_content": "the weather."}, timings=timings),
              _chunk(_call_delta(0, "aqwOReHDKPnqiF7NbRxzDTY1", "get_weather", "")),
              _chunk(_call_delta(0, arguments='{"ci')),
              _chunk(_call_delta(0, arguments='ty": "Oslo"}')),
              _chunk({}, "tool_calls", usage={"prompt_tokens": 10, "completion_tokens": 5})]
    turn, chunks, _ = _stream(events)
    assert _calls(turn) == [("get_weather", {"city": "Oslo"})]
    assert turn.reasoning == "The user wants the weather."
    assert "".join(c.text for c in chunks if c.kind == "reasoning") == "The user wants the weather."
    assert (turn.usage.prompt_tokens, turn.usage.completion_tokens) == (10, 5)


# ---- vLLM -----------------------------------------------------------------------------------------------------

def test_vllm_sends_usage_in_a_last_chunk_without_choices():
    """vLLM sends usage only when ``stream_options.include_usage`` is set, in a final chunk whose ``choices`` is
    empty (vllm-project/vllm#7299); its tool-call ids look like ``chatcmpl-tool-<hex>``."""
    events = [_chunk({"role": "assistant", "content": ""}),
              _chunk(_call_delta(0, "chatcmpl-tool-4c1f0e", "get_weather")),
              _chunk(_call_delta(0, arguments='{"city": "Oslo"}')),
              _chunk({}, "tool_calls"),
              _chunk(None, usage={"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43})]
    turn, _, server = _stream(events)
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    assert _calls(turn) == [("get_weather", {"city": "Oslo"})]
    assert turn.tool_calls[0].id == "chatcmpl-tool-4c1f0e" and turn.finish_reason == "tool_calls"
    assert (turn.usage.prompt_tokens, turn.usage.completion_tokens) == (31, 12)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_vllm_reasoning_in_either_field(field):
    """vLLM's reasoning parsers return ``reasoning_content`` (vllm-project/vllm#12473); newer releases name the
    field ``reasoning`` (BerriAI/litellm#20246 shows both)."""
    events = [_chunk({"role": "assistant", field: "Think: 2+2."}), _chunk({"content": "4"}), _chunk({}, "stop")]
    turn, _, _ = _stream(events)
    assert (turn.reasoning, turn.text) == ("Think: 2+2.", "4")


def test_a_call_inside_reasoning_content_is_said_to_the_model_not_run():
    """Qwen3 behind vLLM's qwen3 reasoning parser can hand a call written inside <think> over as reasoning
    (vllm-project/vllm#17655): the call is not run, and the model is told to write it after </think>."""
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    events = [_chunk({"role": "assistant", "reasoning_content": "I will call " + call}), _chunk({}, "stop")]
    turn, _, _ = _stream(events)
    assert turn.tool_calls == []
    assert len(turn.parse_errors) == 1 and "after </think>" in turn.parse_errors[0]


# ---- SGLang ---------------------------------------------------------------------------------------------------

def test_sglang_short_ids_and_a_tool_call_left_in_the_text():
    """SGLang returns ids such as ``"0"`` (sgl-project/sglang#3797), the same in every turn, and without
    ``--tool-call-parser`` leaves the Qwen markup in ``content``: both turns' calls stay distinct."""
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    events = [_chunk(_call_delta(0, "0", "get_weather", '{"city": "Rome"}')),
              _chunk({"content": text}), _chunk({}, "tool_calls")]
    turn, _, _ = _stream(events)
    assert sorted(_calls(turn), key=lambda c: c[1]["city"]) == [("get_weather", {"city": "Oslo"}),
                                                              ("get_weather", {"city": "Rome"})]
    assert len({c.id for c in turn.tool_calls}) == 2


# ---- Ollama ---------------------------------------------------------------------------------------------------

def test_ollama_whole_calls_in_separate_chunks_and_finish_stop():
    """Ollama streams each tool call whole in one chunk (ollama/ollama#11633); each chunk indexes its calls from 0,
    so two calls of one turn both carry index 0 with distinct ids; a streamed turn with calls may end with
    ``finish_reason: "stop"`` (ollama/ollama#7963); usage is absent without stream_options support."""
    events = [_chunk(_call_delta(0, "call_a1b2c3d4", "get_weather", '{"city": "Oslo"}')),
              _chunk(_call_delta(0, "call_e5f6a7b8", "get_weather", '{"city": "Rome"}')),
              _chunk({"content": ""}, "stop")]
    turn, _, _ = _stream(events)
    assert _calls(turn) == [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]
    assert [c.id for c in turn.tool_calls] == ["call_a1b2c3d4", "call_e5f6a7b8"]
    assert turn.finish_reason == "tool_calls"
    assert turn.usage.prompt_tokens > 0  # estimated, so the loop's token budget still binds


# ---- LM Studio ------------------------------------------------------------------------------------------------

def test_lm_studio_numeric_and_empty_ids_and_empty_names_after_the_first_delta():
    """LM Studio sends numeric-string ids (lmstudio-ai/lmstudio-bug-tracker#830, which also shows an empty id) and,
    streaming, an empty ``name`` in the deltas after the first (lmstudio-ai/lmstudio-bug-tracker#649)."""
    events = [_chunk(_call_delta(0, "193629320", "get_weather", "")),
              _chunk(_call_delta(0, "", "", '{"city":')),
              _chunk(_call_delta(0, "", "", ' "Oslo"}')),
              _chunk(_call_delta(1, "", "get_weather", '{"city": "Rome"}')),
              _chunk({}, "tool_calls")]
    turn, _, _ = _stream(events)
    assert _calls(turn) == [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]
    assert turn.tool_calls[0].id == "193629320" and turn.tool_calls[1].id  # a missing id is made up, unique
    assert turn.tool_calls[1].id != turn.tool_calls[0].id


# ---- shapes that any of them may send -------------------------------------------------------------------------

def test_cumulative_arguments_are_not_doubled():
    """Some OpenAI-compatible proxies send the whole argument text so far in each delta (cumulative) instead of
    fragments; the call must come out once, not glued to itself."""
    events = [_chunk(_call_delta(0, "c1", "get_weather", '{"ci')),
              _chunk(_call_delta(0, None, None, '{"city": "Os')),
              _chunk(_call_delta(0, None, None, '{"city": "Oslo"}')),
              _chunk(_call_delta(0, None, None, '{"city": "Oslo"}')),  # and the whole once more at the end
              _chunk({}, "tool_calls")]
    turn, _, _ = _stream(events)
    assert _calls(turn) == [("get_weather", {"city": "Oslo"})] and turn.parse_errors == []


def test_tool_calls_finish_on_a_call_cut_at_max_tokens_reports_length():
    """Servers report ``finish_reason: "tool_calls"`` for a call whose arguments were cut at max_tokens (vLLM and
    SGLang both end a cut call this way): the turn says "length", so the loop asks for a shorter call."""
    events = [_chunk(_call_delta(0, "c1", "get_weather", '{"city": "Os')), _chunk({}, "tool_calls")]
    turn, _, _ = _stream(events)
    assert turn.finish_reason == "length" and turn.tool_calls == [] and turn.parse_errors


def test_arguments_sent_as_an_object_against_the_spec():
    """Ollama's non-streamed answers and some proxies send ``arguments`` as a JSON object, not a string."""
    body = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}}]}
    with ChatServer([Reply(body)]) as server:
        turn = OpenAIBackend("m", base_url=server.base_url).generate(MSGS, TOOLS)
    assert _calls(turn) == [("get_weather", {"city": "Oslo"})]


# ---- what we send ---------------------------------------------------------------------------------------------

def test_assistant_turns_with_calls_and_empty_replies_send_empty_string_content():
    """llama-cpp-python's server answers HTTP 500 to ``"content": null`` (issue 20); an empty string is what every
    server accepts beside ``tool_calls``, and what an empty corrective reply carries too."""
    history = [Message.user("Weather in Oslo?"),
               Message(role="assistant", content="",
                       tool_calls=[ToolCall(id="c1", name="get_weather", arguments={"city": "Oslo"})]),
               Message(role="tool", tool_call_id="c1", content="4 C, rain"),
               Message(role="assistant", content=None),
               Message.user("And now?")]
    ok = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "4 C"}}]}
    with ChatServer([Reply(ok)]) as server:
        OpenAIBackend("m", base_url=server.base_url).generate(history, TOOLS)
    sent = server.requests[0]["messages"]
    assert [m.get("content") for m in sent if m["role"] == "assistant"] == ["", ""]
    assert all(m["content"] is not None for m in sent)


def test_a_server_that_cannot_stream_tools_gets_one_unstreamed_request_then_none_streamed():
    """llama-cpp-python answers a streamed request with tools and tool_choice auto by HTTP 200 and then an error
    event ("Automatic streaming tool choice is not supported"): the backend asks once more, unstreamed, and sends
    later requests with tools unstreamed; no retries for nothing."""
    err = {"error": {"message": "Automatic streaming tool choice is not supported", "type": "internal_server_error"}}
    whole = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "",
        "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}}]}
    with ChatServer([Reply(events=[err], done=False), Reply(whole), Reply(whole)]) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, backoff_s=0.01)

        async def go():
            first = [c async for c in backend.astream(MSGS, TOOLS, GenerationSettings())]
            second = [c async for c in backend.astream(MSGS, TOOLS, GenerationSettings())]
            await backend.aclose()
            return first, second

        first, second = asyncio.run(go())
    assert _calls(first[-1].turn) == _calls(second[-1].turn) == [("get_weather", {"city": "Oslo"})]
    assert [r["stream"] for r in server.requests] == [True, False, False]


def test_an_empty_stream_for_a_request_with_tools_falls_back_to_one_unstreamed_request():
    """llama-cpp-python 0.3.36 behind starlette 1.x answers such a request with 200 and an empty body (the
    ValueError stays in its log; seen against the real server, tests/backends/test_llama_cpp_server.py): one
    unstreamed request, not three retries of the stream."""
    whole = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}]}
    with ChatServer([Reply(events=[], done=False), Reply(whole)]) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, backoff_s=0.01)

        async def go():
            out = [c async for c in backend.astream(MSGS, TOOLS, GenerationSettings())]
            await backend.aclose()
            return out

        chunks = asyncio.run(go())
    assert chunks[-1].turn.text == "hi"
    assert [r["stream"] for r in server.requests] == [True, False]


def test_the_same_500_twice_is_final():
    """A 500 with the same body twice (llama-cpp-python's empty-message 500 for tool_choice "required") is the
    server failing on this request: two requests, not four."""
    err = {"error": {"message": "", "type": "internal_server_error"}}
    two = [*TOOLS, {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    with ChatServer([Reply(err, 500)] * 4) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, backoff_s=0.01)
        with pytest.raises(BackendConnectionError) as e:
            backend.generate(MSGS, two, GenerationSettings(tool_choice="required"))
    assert len(server.requests) == 2 and "tool_choice" in (e.value.hint or "")


def test_required_over_one_tool_is_sent_as_that_tool():
    ok = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}
    with ChatServer([Reply(ok)]) as server:
        OpenAIBackend("m", base_url=server.base_url).generate(MSGS, TOOLS, GenerationSettings(tool_choice="required"))
    assert server.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_stream_false_sends_every_request_whole():
    whole = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}]}
    with ChatServer([Reply(whole)]) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, stream=False)

        async def go():
            out = [c async for c in backend.astream(MSGS, None, GenerationSettings())]
            await backend.aclose()
            return out

        chunks = asyncio.run(go())
    assert server.requests[0]["stream"] is False
    assert [c.kind for c in chunks] == ["text", "done"] and chunks[-1].turn.text == "hi"


# ---- errors ---------------------------------------------------------------------------------------------------

def test_a_validation_error_is_passed_on_whole_and_a_request_caused_500_is_not_retried(monkeypatch):
    """A 500 whose body is a validation error of the request fails the same way every time: one request, and the
    message keeps every problem the server listed (it used to be cut at 300 characters)."""
    monkeypatch.setenv("SECRET_TOKEN_FOR_TEST", "sk-test-abcdefghijklmnop1234")
    from keye_agent.errors import register_secret
    register_secret("sk-test-abcdefghijklmnop1234")
    detail = [{"loc": ["body", "messages", i, "content"], "msg": "Input should be a valid string",
               "type": "string_type"} for i in range(7)]
    detail.append({"loc": ["body", "api_key"], "msg": "echoed sk-test-abcdefghijklmnop1234", "type": "x"})
    with ChatServer([Reply({"detail": detail}, 500)] * 4) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, backoff_s=0.01)
        with pytest.raises(BackendConnectionError) as e:
            backend.generate(MSGS, TOOLS)
    msg = str(e.value)
    assert len(server.requests) == 1
    assert all(f"body.messages.{i}.content: Input should be a valid string" in msg for i in range(7))
    assert "sk-test-abcdefghijklmnop1234" not in msg and "abcdefghijklmnop" not in msg


def test_a_plain_server_error_is_still_retried():
    ok = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}]}
    with ChatServer([Reply({"error": {"message": "upstream overloaded"}}, 503), Reply(ok)]) as server:
        turn = OpenAIBackend("m", base_url=server.base_url, backoff_s=0.01).generate(MSGS)
    assert turn.text == "hi" and len(server.requests) == 2


def test_no_silent_default_endpoint(monkeypatch, caplog):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError) as e:
        OpenAIBackend("gpt-4o-mini")
    assert "base_url" in str(e.value) and "OPENAI_API_KEY" in (e.value.hint or "")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert OpenAIBackend("m").url == "http://127.0.0.1:9/v1/chat/completions"
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-0123456789abcdef")
    with caplog.at_level("WARNING", logger="keye_agent.backends.openai"):
        backend = OpenAIBackend("gpt-4o-mini")
    assert backend.url == "https://api.openai.com/v1/chat/completions"
    assert "api.openai.com" in caplog.text and "sk-test-key" not in caplog.text


def test_requests_round_trip_as_json():
    """The body we send is plain JSON the servers parse (no NaN, no objects where strings are expected)."""
    ok = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}
    with ChatServer([Reply(ok)]) as server:
        OpenAIBackend("m", base_url=server.base_url).generate(MSGS, TOOLS, GenerationSettings(tool_choice="get_weather"))
    body = server.requests[0]
    assert json.loads(json.dumps(body)) == body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_run_no_stream_sends_whole_requests(tmp_path, capsys):
    """`keye-agent run --no-stream` against an OpenAI-compatible server: every request goes unstreamed."""
    from keye_agent.cli.main import main

    whole = {"choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": "Oslo: 4 C, rain."}}],
             "usage": {"prompt_tokens": 9, "completion_tokens": 5}}
    with ChatServer([Reply(whole)]) as server:
        rc = main(["run", "Weather in Oslo?", "--model", "openai:m", "--base-url", server.base_url,
                   "--no-stream", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["final_answer"] == "Oslo: 4 C, rain."
    assert [r["stream"] for r in server.requests] == [False]
