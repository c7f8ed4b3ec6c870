"""OpenAIBackend against a real HTTP server on loopback (tests/backends/openai_test_server.py); only the model's
answers are scripted. Timeouts and backoff are short so the suite stays fast."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from typing import Any

import pytest
from openai_test_server import ChatServer, Reply, completion, delta, wire_call

from keye_agent.backends._openai_wire import request_body, to_wire_messages
from keye_agent.backends.openai import OpenAIBackend
from keye_agent.errors import BackendConnectionError, ContextWindowError, ModelError
from keye_agent.types import (
    AssistantTurn,
    GenerationSettings,
    ImagePart,
    Message,
    StreamChunk,
    TextPart,
    ToolCall,
)

KEY = "sk-test-SECRET-0123456789"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def backend(server: ChatServer, **kw: Any) -> OpenAIBackend:
    opts: dict[str, Any] = {"base_url": server.base_url, "api_key": KEY, "timeout": 2.0, "max_retries": 2,
                            "backoff_s": 0.01}
    opts.update(kw)
    return OpenAIBackend("test-model", **opts)


async def _collect(b: OpenAIBackend, messages: list[Message], tools: Any = None,
                   settings: GenerationSettings | None = None) -> list[StreamChunk]:
    async with b:
        return [c async for c in b.astream(messages, tools, settings or GenerationSettings())]


def stream(b: OpenAIBackend, messages: list[Message], tools: Any = None) -> list[StreamChunk]:
    return asyncio.run(_collect(b, messages, tools))


def test_plain_answer_and_request_shape() -> None:
    with ChatServer([Reply(completion("4", usage=(20, 3)))]) as server:
        turn = backend(server).generate([Message.system("Be brief."), Message.user("2+2?")])
    assert turn.text == "4" and turn.tool_calls == [] and turn.finish_reason == "stop"
    assert (turn.usage.prompt_tokens, turn.usage.completion_tokens) == (20, 3)
    body = server.requests[0]
    assert body["model"] == "test-model" and body["stream"] is False
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert "tools" not in body and "tool_choice" not in body
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


def test_tool_calls_and_wire_format_of_history() -> None:
    reply = completion(None, [wire_call("c9", "get_weather", '{"city": "Paris"}')], finish="tool_calls")
    history = [
        Message.user([TextPart(text="What is in this picture?"), ImagePart(data="iVBORw0KGgo=", mime_type="image/png")]),
        Message.assistant(None, [ToolCall(id="c1", name="get_weather", arguments={"city": "Rome"})]),
        Message.tool("c1", "get_weather", "sunny"),
    ]
    with ChatServer([Reply(reply)]) as server:
        turn = backend(server).generate(history, TOOLS, GenerationSettings(tool_choice="get_weather", top_k=20))
    assert turn.tool_calls == [ToolCall(id="c9", name="get_weather", arguments={"city": "Paris"})]
    assert turn.finish_reason == "tool_calls" and turn.parse_errors == []
    body = server.requests[0]
    assert body["tools"] == TOOLS
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["top_k"] == 20
    user, assistant, tool = body["messages"]
    assert user["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert assistant["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Rome"}'}
    assert tool == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}


@pytest.mark.parametrize("choice", ["auto", "required", "none"])
def test_tool_choice_keywords_pass_through(choice: str) -> None:
    two = [*TOOLS, {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}]
    body = request_body("m", [Message.user("hi")], two, GenerationSettings(tool_choice=choice), stream=False)
    assert body["tool_choice"] == choice


def test_tool_images_follow_the_tool_messages() -> None:
    wire = to_wire_messages([
        Message.assistant(None, [ToolCall(id="a", name="shot", arguments={}), ToolCall(id="b", name="t")]),
        Message.tool("a", "shot", [TextPart(text="took it"), ImagePart(url="https://x/y.png")]),
        Message.tool("b", "t", "ok"),
    ])
    assert [m["role"] for m in wire] == ["assistant", "tool", "tool", "user"]
    assert wire[1]["content"] == "took it"
    assert wire[3]["content"][1]["image_url"]["url"] == "https://x/y.png"


def test_streaming_assembles_deltas() -> None:
    events = [
        delta(role="assistant", reasoning_content="Need "),
        delta(reasoning_content="weather."),
        delta(content="Checking."),
        delta(tool_calls=[{"index": 0, "id": "c1", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"ci'}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]),
        delta(finish="tool_calls"),
        {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12}},
    ]
    with ChatServer([Reply(events=events)]) as server:
        chunks = stream(backend(server), [Message.user("weather in Oslo?")], TOOLS)
    assert [(c.kind, c.text) for c in chunks[:-1]] == [("reasoning", "Need "), ("reasoning", "weather."),
                                                     ("text", "Checking.")]
    turn = chunks[-1].turn
    assert chunks[-1].kind == "done" and isinstance(turn, AssistantTurn)
    assert turn.tool_calls == [ToolCall(id="c1", name="get_weather", arguments={"city": "Oslo"})]
    assert turn.reasoning == "Need weather." and turn.text == "Checking."
    assert (turn.usage.prompt_tokens, turn.usage.completion_tokens) == (30, 12)
    assert server.requests[0]["stream"] is True and server.headers[0]["accept"] == "text/event-stream"


def test_streaming_markup_left_in_text_by_the_server() -> None:
    """A server started without tool/reasoning parsers streams the raw Qwen markup, split anywhere."""
    raw = '<think>plan it</think>Sure. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
    events = [delta(content=raw[i:i + 5]) for i in range(0, len(raw), 5)] + [delta(finish="stop")]
    with ChatServer([Reply(events=events)]) as server:
        chunks = stream(backend(server), [Message.user("Rome?")], TOOLS)
    shown = {"reasoning": "", "text": ""}
    for c in chunks[:-1]:
        shown[c.kind] += c.text
    assert shown == {"reasoning": "plan it", "text": "Sure. "}
    turn = chunks[-1].turn
    assert turn is not None and turn.text == "Sure." and turn.reasoning == "plan it"
    assert turn.tool_calls == [ToolCall(id="call_0", name="get_weather", arguments={"city": "Rome"})]
    assert turn.finish_reason == "tool_calls"


def test_text_tool_calls_without_server_parser() -> None:
    content = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Nice",}}\n</tool_call>'
    with ChatServer([Reply(completion(content))]) as server:
        turn = backend(server).generate([Message.user("Nice?")], TOOLS)
    assert turn.tool_calls == [ToolCall(id="call_0", name="get_weather", arguments={"city": "Nice"})]
    assert turn.text == "" and turn.finish_reason == "tool_calls"


def test_429_with_retry_after_then_success(caplog: pytest.LogCaptureFixture) -> None:
    limited = Reply({"error": {"message": "rate limited"}}, 429, {"Retry-After": "0.2"})
    with ChatServer([limited, Reply(completion("ok"))]) as server:
        with caplog.at_level(logging.WARNING, logger="keye_agent.backends.openai"):
            turn = backend(server, backoff_s=5.0).generate([Message.user("hi")])
    assert turn.text == "ok" and len(server.requests) == 2
    assert "HTTP 429" in caplog.text and "in 0.20 s" in caplog.text  # waited Retry-After, not the 5 s backoff
    assert KEY not in caplog.text


def test_retry_after_as_an_http_date_is_honoured() -> None:
    past = email.utils.formatdate(time.time() - 60, usegmt=True)  # "come back at <a moment already gone>"
    limited = Reply({"error": {"message": "rate limited"}}, 429, {"Retry-After": past})
    with ChatServer([limited, Reply(completion("ok"))]) as server:
        turn = backend(server, backoff_s=5.0).generate([Message.user("hi")])
    assert turn.text == "ok" and len(server.requests) == 2  # retried at once, not after the 5 s backoff


def test_retry_after_longer_than_the_cap_is_raised_at_once() -> None:
    limited = Reply({"error": {"message": "quota"}}, 429, {"Retry-After": "3600"})
    with ChatServer([limited, Reply(completion("never"))]) as server:
        with pytest.raises(BackendConnectionError) as info:
            backend(server, max_backoff_s=30.0).generate([Message.user("hi")])
    assert len(server.requests) == 1 and info.value.status_code == 429
    assert "asked to wait 3600 s, more than the 30 s this call may wait" in str(info.value)


def test_a_wait_never_outlives_the_calls_deadline() -> None:
    """A server asking for 5 s, within the 30 s cap, is not waited when the call's own deadline is 1 s."""
    limited = Reply({"error": {"message": "busy"}}, 503, {"Retry-After": "5"})
    with ChatServer([limited, Reply(completion("late"))]) as server:
        with pytest.raises(BackendConnectionError, match=r"asked to wait 5 s, more than the [\d.]+ s left before") as info:
            backend(server, deadline_s=1.0).generate([Message.user("hi")])
    assert len(server.requests) == 1 and info.value.status_code == 503


def test_500_then_success() -> None:
    with ChatServer([Reply({"error": {"message": "boom"}}, 500), Reply(completion("fine"))]) as server:
        turn = backend(server).generate([Message.user("hi")])
    assert turn.text == "fine" and len(server.requests) == 2


def test_persistent_500_is_a_typed_error() -> None:
    with ChatServer([Reply({"error": {"message": "engine dead"}}, 503)] * 3) as server:
        with pytest.raises(BackendConnectionError) as info:
            backend(server, max_retries=2).generate([Message.user("hi")])
    assert info.value.status_code == 503 and len(server.requests) == 3
    assert "HTTP 503" in str(info.value) and "engine dead" in str(info.value)
    assert "gave up after 3 attempts" in str(info.value)


def test_timeout_is_a_typed_error() -> None:
    with ChatServer([Reply(completion("late"), delay=1.5)]) as server:
        with pytest.raises(BackendConnectionError, match="did not answer within the 0.3 s timeout"):
            backend(server, timeout=0.3, max_retries=0).generate([Message.user("hi")])


def test_timeout_then_success_is_retried() -> None:
    with ChatServer([Reply(completion("late"), delay=1.5), Reply(completion("on time"))]) as server:
        turn = backend(server, timeout=0.3, max_retries=1).generate([Message.user("hi")])
    assert turn.text == "on time"


def test_stream_cut_midway_raises_clearly() -> None:
    events = [delta(content="The answer "), delta(content="is "), delta(content="42"), delta(finish="stop")]
    with ChatServer([Reply(events=events, cut_after=2), Reply(events=events)]) as server:
        got: list[StreamChunk] = []

        async def run() -> None:
            async with backend(server) as b:
                async for c in b.astream([Message.user("q")], None, GenerationSettings()):
                    got.append(c)

        with pytest.raises(BackendConnectionError, match=r"cut after 2 event\(s\).*not retried"):
            asyncio.run(run())
    assert "".join(c.text for c in got) == "The answer is "
    assert len(server.requests) == 1  # text was already shown: a retry would repeat it


def test_stream_cut_before_anything_is_retried() -> None:
    events = [delta(role="assistant"), delta(content="hello"), delta(finish="stop")]
    with ChatServer([Reply(events=events, cut_after=1), Reply(events=events)]) as server:
        chunks = stream(backend(server), [Message.user("q")])
    assert chunks[-1].turn is not None and chunks[-1].turn.text == "hello"
    assert len(server.requests) == 2


def test_stream_closed_without_done_is_a_cut() -> None:
    events = [delta(content="partial")]
    with ChatServer([Reply(events=events, done=False, chunked=False)]) as server:
        with pytest.raises(BackendConnectionError, match="closed before the server sent a finish_reason"):
            stream(backend(server, max_retries=0), [Message.user("q")])


def test_malformed_arguments_go_to_parse_errors() -> None:
    calls = [wire_call("c1", "get_weather", '{"city": "Paris"'),  # cut short
             wire_call("c2", "get_weather", "{'city': 'Lyon'}"),  # Python dict: recovered
             wire_call("c3", "get_weather", "[1, 2]")]
    with ChatServer([Reply(completion(None, calls, finish="tool_calls"))]) as server:
        turn = backend(server).generate([Message.user("w")], TOOLS)
    assert turn.tool_calls == [ToolCall(id="c2", name="get_weather", arguments={"city": "Lyon"})]
    assert len(turn.parse_errors) == 2
    assert turn.parse_errors[0].startswith("tool call 1 from the server ('get_weather', id c1): arguments are not")
    assert "got an array" in turn.parse_errors[1]
    assert turn.raw is not None and '{"city": "Paris"' in turn.raw


def test_api_key_never_in_errors() -> None:
    """The server echoes the Authorization header back in its 401 body; the error must not carry it."""
    with ChatServer([Reply({"error": {"message": f"bad key Bearer {KEY}"}}, 401)]) as server:
        with pytest.raises(BackendConnectionError) as info:
            backend(server).generate([Message.user("hi")])
    assert KEY not in str(info.value) and "***" in str(info.value)
    assert info.value.status_code == 401 and "API key" in str(info.value)
    assert KEY not in repr(backend(server))


def test_context_overflow_is_context_window_error() -> None:
    body = {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000"}}
    with ChatServer([Reply(body, 400)]) as server:
        with pytest.raises(ContextWindowError):
            backend(server).generate([Message.user("long")])
    assert len(server.requests) == 1


def test_unreachable_server() -> None:
    with ChatServer([]) as server:
        url = server.base_url
    with pytest.raises(BackendConnectionError, match="cannot reach") as info:
        OpenAIBackend("m", base_url=url, api_key="", max_retries=1, backoff_s=0.01).generate([Message.user("hi")])
    assert "gave up after 2 attempts" in str(info.value)


def test_wrong_path_gets_a_hint() -> None:
    with ChatServer([]) as server:
        b = OpenAIBackend("m", base_url=server.base_url.removesuffix("/v1"), api_key="", max_retries=0)
        with pytest.raises(BackendConnectionError, match="404") as info:
            b.generate([Message.user("hi")])
    assert "base_url" in str(info.value)


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-987654")
    with ChatServer([Reply(completion("ok"))]) as server:
        OpenAIBackend("m", base_url=server.base_url, headers={"X-Trace": "t1"}).generate([Message.user("hi")])
    assert server.headers[0]["authorization"] == "Bearer sk-from-env-987654"
    assert server.headers[0]["x-trace"] == "t1"
    assert json.loads(json.dumps(server.requests[0]))["model"] == "m"


def test_local_image_file_becomes_data_url(tmp_path: Any) -> None:
    png = tmp_path / "dot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    wire = to_wire_messages([Message.user([TextPart(text="see"), ImagePart(url=str(png))])])
    assert wire[0]["content"][1]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="
    with pytest.raises(ModelError, match="cannot read image"):
        to_wire_messages([Message.user([ImagePart(url=str(tmp_path / "missing.png"))])])


def test_error_event_mid_stream() -> None:
    events = [delta(content="partial "), {"error": {"message": "CUDA out of memory", "code": 500}}]
    with ChatServer([Reply(events=events, done=False)]) as server:
        with pytest.raises(BackendConnectionError, match="failed mid-stream: CUDA out of memory"):
            stream(backend(server), [Message.user("q")])
    assert len(server.requests) == 1


def test_enable_thinking_and_stop_reach_the_server() -> None:
    with ChatServer([Reply(completion("<think>\n\n</think>\n\nhi"))]) as server:
        turn = backend(server).generate([Message.user("hi")], None,
                                        GenerationSettings(enable_thinking=False, stop=["END"], seed=7))
    assert turn.text == "hi" and turn.reasoning is None
    body = server.requests[0]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["stop"] == ["END"] and body["seed"] == 7


def test_agent_runs_on_the_backend_and_corrects_a_malformed_call() -> None:
    """End to end: the planner loop over OpenAIBackend over HTTP. The first call's arguments are cut short; the
    loop sends the parse error back, the model corrects itself, the tool runs, and the answer comes as text."""
    from keye_agent.agent import Agent

    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: the first addend.
            b: the second addend.
        """
        return a + b

    script = [
        Reply(events=[delta(tool_calls=[{"index": 0, "id": "c1", "type": "function",
                                         "function": {"name": "add", "arguments": '{"a": 2, "b":'}}]),
                      delta(finish="tool_calls")]),
        Reply(completion(None, [wire_call("c2", "add", '{"a": 2, "b": 3}')], finish="tool_calls")),
        Reply(events=[delta(content="2 + 3 = "), delta(content="5."), delta(finish="stop")]),
    ]
    with ChatServer(script) as server:
        result = Agent(backend(server), [add], final_answer_tool=False).run("What is 2 + 3?")
    assert result.ok and result.final_answer == "2 + 3 = 5."
    second, third = server.requests[1]["messages"], server.requests[2]["messages"]
    assert "arguments are not valid JSON" in second[-1]["content"]
    assert {"role": "tool", "tool_call_id": "c2", "content": "5"} in third


def test_garbage_body_is_a_typed_error() -> None:
    with ChatServer([Reply("<html>502 Bad Gateway</html>"), Reply("not json")]) as server:
        with pytest.raises(BackendConnectionError, match="not JSON"):
            backend(server).generate([Message.user("hi")])
        with pytest.raises(BackendConnectionError, match="without choices"):
            stream(backend(server, max_retries=0), [Message.user("hi")])


def test_consumer_stopping_early_closes_the_stream() -> None:
    events = [delta(content=f"w{i} ") for i in range(50)] + [delta(finish="stop")]
    with ChatServer([Reply(events=events), Reply(completion("next"))]) as server:

        async def run() -> tuple[str, str]:
            async with backend(server) as b:
                async for c in b.astream([Message.user("q")], None, GenerationSettings()):
                    first = c.text
                    break
                turn = await b.agenerate([Message.user("q2")], None, GenerationSettings())
            return first, turn.text

        assert asyncio.run(run()) == ("w0 ", "next")


def test_usage_estimated_when_the_server_reports_none() -> None:
    events = [delta(content="a short answer"), delta(finish="stop")]
    with ChatServer([Reply(events=events)]) as server:
        turn = stream(backend(server), [Message.user("a question of some length")])[-1].turn
    assert turn is not None and turn.usage.prompt_tokens > 0 and turn.usage.completion_tokens > 0


def test_max_tokens_field_and_extra_body() -> None:
    with ChatServer([Reply(completion("ok"))]) as server:
        backend(server, max_tokens_field="max_completion_tokens", extra_body={"top_k": 5}).generate(
            [Message.user("hi")], None, GenerationSettings(max_tokens=77))
    body = server.requests[0]
    assert body["max_completion_tokens"] == 77 and "max_tokens" not in body and body["top_k"] == 5


@pytest.mark.parametrize("raw", [
    "<think>a < b</think>text with <tags> and <tool_call>{\"name\": \"x\"}</tool_call> tail",
    "  <thi",
    "<thinking> is not <think>, so this is text",
    "<think>never closed <tool_call>",
])
def test_delta_router_is_independent_of_the_split(raw: str) -> None:
    from keye_agent.backends._openai_wire import DeltaRouter

    def route(step: int) -> dict[str, str]:
        r, out = DeltaRouter(), {"text": "", "reasoning": ""}
        pieces = [raw[i:i + step] for i in range(0, len(raw), step)]
        for kind, text in [p for piece in pieces for p in r.feed(piece)] + r.flush():
            out[kind] += text
        return out

    whole = route(len(raw))
    assert all(route(step) == whole for step in range(1, 12))
    if raw.startswith("<think>a"):
        assert whole == {"reasoning": "a < b", "text": "text with <tags> and "}
    if raw.startswith("<thinking>"):
        assert whole == {"reasoning": "", "text": raw}


def test_hint_appears_once() -> None:
    with ChatServer([]) as server:
        url = server.base_url
    with pytest.raises(BackendConnectionError) as info:
        OpenAIBackend("m", base_url=url, api_key="", max_retries=1, backoff_s=0.01).generate([Message.user("hi")])
    assert str(info.value).count("hint:") == 1
