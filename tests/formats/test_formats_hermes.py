"""The Hermes format module over plain dicts: one preamble and one call text for every renderer, the structural
tags a grammar compiles, the wording the loop gives a model, and the old import paths still answering."""

from __future__ import annotations

import json

import pytest

from keye_agent.errors import ConfigError
from keye_agent.formats import hermes
from keye_agent.model.chat_template import render_qwen3

TOOL = {"type": "function", "function": {"name": "add", "description": "Add", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}}}


def test_chat_template_and_plain_chat_share_the_preamble_and_the_call_text() -> None:
    msgs = [{"role": "system", "content": "Sys"}, {"role": "user", "content": "2+3?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "add", "arguments": {"a": 2}}}]},
            {"role": "tool", "tool_call_id": "c0", "content": "5"}, {"role": "tool", "content": "6"}]
    rendered = render_qwen3(msgs, [TOOL], add_generation_prompt=False)
    plain = hermes.plain_chat(msgs, [TOOL])
    assert plain[0] == {"role": "system", "content": "Sys\n\n" + hermes.tools_block([TOOL])}
    assert hermes.tools_block([TOOL]) in rendered
    call = hermes.render_call("add", {"a": 2})
    assert call == '<tool_call>\n{"name": "add", "arguments": {"a": 2}}\n</tool_call>'
    assert call in rendered and plain[2] == {"role": "assistant", "content": call}
    assert plain[3] == {"role": "user", "content": "<tool_response>\n5\n</tool_response>\n"
                                                   "<tool_response>\n6\n</tool_response>"}
    assert hermes.render_response("5") in rendered
    # what is rendered parses back to the same call
    assert [(c.name, c.arguments) for c in hermes.parse(call).calls] == [("add", {"a": 2})]


def test_render_call_keeps_string_arguments_verbatim_and_refuses_an_empty_name() -> None:
    assert hermes.render_call("f", '{"x": 1}') == '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    with pytest.raises(ValueError, match="non-empty name"):
        hermes.render_call("", {})


@pytest.mark.parametrize(("choice", "kind"), [("auto", "triggered_tags"), ("required", "tags_with_separator"),
                                              ("add", "tags_with_separator")])
def test_structural_tag_shapes(choice: str, kind: str) -> None:
    spec = hermes.structural_tag([TOOL], choice, parallel=False)
    assert spec is not None and spec["type"] == "structural_tag" and spec["format"]["type"] == kind
    tag = spec["format"]["tags"][0]
    assert tag["begin"] == hermes.call_prefix("add") and tag["end"] == hermes.CALL_SUFFIX
    assert tag["begin"] + '{"a": 1}' + tag["end"] == hermes.render_call("add", {"a": 1})
    assert spec["format"]["stop_after_first"] is True
    json.dumps(spec)  # plain data


def test_structural_tag_with_reasoning_and_refusals() -> None:
    spec = hermes.structural_tag([TOOL], "required", allow_reasoning=True)
    assert spec is not None
    think, calls = spec["format"]["elements"]
    assert think["content"]["begin"] == hermes.THINK_OPEN and calls["at_least_one"] is True
    assert hermes.structural_tag([TOOL], "none") is None and hermes.structural_tag([], "auto") is None
    with pytest.raises(ConfigError, match="not among the offered tools"):
        hermes.structural_tag([TOOL], "mul")
    with pytest.raises(ConfigError, match="no tools were offered"):
        hermes.structural_tag(None, "required")


def test_call_format_wording_and_the_backends_that_carry_it() -> None:
    from keye_agent.agent.faults import malformed
    from keye_agent.backends.keye import KeyeBackend
    from keye_agent.backends.transformers import TransformersBackend
    from keye_agent.types import CallFormat

    fmt = hermes.HERMES
    assert fmt.name == "hermes"
    assert "<tool_call>" in fmt.how_to_call() and '"arguments"' in fmt.how_to_call()
    assert KeyeBackend.call_format is fmt and TransformersBackend.call_format is fmt
    assert isinstance(fmt, CallFormat)
    message = malformed(["bad JSON"], KeyeBackend.__new__(KeyeBackend)).message
    assert fmt.how_to_call() in message and message.count("plain text") == 1


def test_old_import_paths_answer() -> None:
    from keye_agent.backends import _hermes, constrained, parsing

    assert parsing.OPEN == _hermes.CALL_OPEN == constrained.CALL_OPEN == hermes.CALL_OPEN
    assert _hermes.StreamSplitter is hermes.StreamSplitter
    assert parsing.coerce_arguments('{"a": 1}') == ({"a": 1}, None)
    assert parsing.parse_tool_calls(hermes.render_call("f", {})).tool_calls[0].name == "f"
