"""The Hermes-format helpers of the local backends, without a model: prompt messages for chat templates that know
no tools, and the stream splitter that hides tool-call text and separates reasoning."""

from __future__ import annotations

import random

import pytest

from keye_agent.backends._hermes import StreamSplitter, hermes_messages, native_messages
from keye_agent.errors import ConfigError
from keye_agent.types import ImagePart, Message, TextPart, ToolCall

RAW = ('<think>plan it</think>Let me look. <tool_call>\n{"name": "f", "arguments": {"x": "<tool_call>"}}\n'
       '</tool_call> Done <b>bold</b> <thi')


def _split_all(pieces: list[str], **kw: bool) -> list[tuple[str, str]]:
    s = StreamSplitter(**kw)
    out = [p for piece in pieces for p in s.feed(piece)] + s.flush()
    merged: list[tuple[str, str]] = []
    for kind, text in out:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


@pytest.mark.parametrize("seed", range(20))
def test_splitter_is_independent_of_how_text_is_chunked(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(RAW)), rng.randint(1, 25)))
    pieces = [RAW[a:b] for a, b in zip([0, *cuts], [*cuts, len(RAW)], strict=True)]
    assert _split_all(pieces) == [("reasoning", "plan it"), ("text", "Let me look.  Done <b>bold</b> <thi")]


def test_splitter_starts_inside_reasoning_when_the_prompt_opened_it() -> None:
    assert _split_all(["still thinking</th", "ink>answer"], in_reasoning=True) == [
        ("reasoning", "still thinking"), ("text", "answer")]


def test_hermes_messages() -> None:
    msgs = [Message.system("Be brief."), Message.user("hi"),
            Message.assistant("checking", [ToolCall(id="1", name="f", arguments={"a": 1}),
                                           ToolCall(id="2", name="g", arguments={})]),
            Message.tool("1", "f", "one"), Message.tool("2", "g", "two"), Message.assistant("done")]
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
    out = hermes_messages(msgs, tools, "test")
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant"]
    assert out[0]["content"].startswith("Be brief.\n\n# Tools") and '{"name": "f", "description": "d"' in out[0]["content"]
    assert out[2]["content"] == ('checking\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
                                 '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>')
    assert out[3]["content"] == "<tool_response>\none\n</tool_response>\n<tool_response>\ntwo\n</tool_response>"
    assert hermes_messages([Message.user("hi")], None, "test") == [{"role": "user", "content": "hi"}]


def test_native_messages_keep_calls_structured() -> None:
    out = native_messages([Message.assistant(None, [ToolCall(id="1", name="f", arguments={"a": 1})]),
                           Message.tool("1", "f", "r")], "test")
    assert out[0]["tool_calls"][0]["function"] == {"name": "f", "arguments": {"a": 1}}
    assert out[1] == {"role": "tool", "content": "r", "tool_call_id": "1", "name": "f"}


def test_images_are_refused_by_text_only_models() -> None:
    msg = Message.user([TextPart(text="what is this?"), ImagePart(url="cat.png")])
    with pytest.raises(ConfigError, match="text-only model"):
        hermes_messages([msg], None, "transformers:x")


def test_splitter_reads_think_as_the_parser_does() -> None:
    """Reasoning only at the start (as parse_tool_calls reads it); prose after a call is shown unless the caller
    hides everything from the first call on (the OpenAI-compatible stream)."""
    raw = ' \n<think>r</think>A <think>not reasoning</think> <tool_call>{"name": "f"}</tool_call> tail'
    assert _split_all([raw]) == [("reasoning", "r"), ("text", "A <think>not reasoning</think>  tail")]
    assert _split_all([raw], text_after_calls=False) == [("reasoning", "r"),
                                                          ("text", "A <think>not reasoning</think> ")]
    from keye_agent.backends.parsing import parse_tool_calls

    parsed = parse_tool_calls(raw)
    assert parsed.reasoning == "r" and parsed.text.startswith("A <think>not reasoning</think>")
