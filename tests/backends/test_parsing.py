"""parse_tool_calls on the hand-written corpus of real-world malformed outputs, plus properties the corpus
cannot show (never raises, ids, arguments coercion)."""

from __future__ import annotations

import random

import pytest
from parser_corpus import CORPUS, Case

from keye_agent.backends.parsing import ParsedOutput, coerce_arguments, parse_tool_calls


def test_corpus_is_large_and_cites_sources() -> None:
    assert len(CORPUS) >= 40
    assert len({c.id for c in CORPUS}) == len(CORPUS), "case ids must be unique"
    for case in CORPUS:
        assert case.source.startswith("https://github.com/") or case.source == "model run here", case.id


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_corpus_case(case: Case) -> None:
    out = parse_tool_calls(case.output)
    assert isinstance(out, ParsedOutput)
    assert out.text == case.text
    assert out.reasoning == case.reasoning
    got = [(c.name, c.arguments) for c in out.tool_calls]
    want = [(c[-2], c[-1]) for c in case.calls]
    assert got == want
    for call, spec in zip(out.tool_calls, case.calls, strict=True):
        if len(spec) == 3:
            assert call.id == spec[0]
    assert len(out.errors) == len(case.errors), out.errors
    for err, fragment in zip(out.errors, case.errors, strict=True):
        assert fragment in err, err


def test_generated_ids_are_sequential() -> None:
    out = parse_tool_calls(
        '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": {}}</tool_call>'
    )
    assert [c.id for c in out.tool_calls] == ["call_0", "call_1"]


def test_duplicate_given_ids_are_replaced() -> None:
    out = parse_tool_calls('<tool_call>[{"id": "x", "name": "a"}, {"id": "x", "name": "b"}]</tool_call>')
    assert [c.id for c in out.tool_calls] == ["x", "call_1"]


def test_untagged_can_be_disabled() -> None:
    raw = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert parse_tool_calls(raw).tool_calls
    out = parse_tool_calls(raw, allow_untagged=False)
    assert out.tool_calls == [] and out.text == raw and out.errors == []


def test_error_names_block_and_quotes_excerpt() -> None:
    out = parse_tool_calls('Hi\n<tool_call>{"name": "f", "arguments": {"a": 1,, }}</tool_call>')
    assert out.text == "Hi"
    (err,) = out.errors
    assert err.startswith("<tool_call> block 1: invalid JSON at line 1 column")
    assert '{"name": "f"' in err


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, {}),
        ("", {}),
        ({"a": 1}, {"a": 1}),
        ('{"a": 1}', {"a": 1}),
        ('"{\\"a\\": 1}"', {"a": 1}),  # encoded twice
        ("{'a': True}", {"a": True}),
    ],
)
def test_coerce_arguments_accepts(raw: object, expected: dict) -> None:
    assert coerce_arguments(raw) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [("[1, 2]", "got an array"), ('{"a": ', "not valid JSON"), (3, "got a number"), ('{"a":1}{"b":2}', "2 JSON")],
)
def test_coerce_arguments_refuses(raw: object, fragment: str) -> None:
    args, why = coerce_arguments(raw)
    assert args is None and why is not None and fragment in why


def test_never_raises_on_fuzzed_corpus() -> None:
    """Cut, splice and corrupt the corpus outputs: the parser must return, never raise."""
    rng = random.Random(1234)
    pieces = ["<tool_call>", "</tool_call>", "<think>", "</think>", "```", "{", "}", "[", "]", '"', "'", ",", "\\",
              "#", "//", "<function=x>", "<parameter=y>", "\n"]
    outputs = [c.output for c in CORPUS]
    for _ in range(3000):
        s = rng.choice(outputs)
        op = rng.randrange(3)
        if op == 0:
            s = s[: rng.randrange(len(s) + 1)]
        elif op == 1:
            at = rng.randrange(len(s) + 1)
            s = s[:at] + rng.choice(pieces) + s[at:]
        else:
            s = s + rng.choice(outputs)
        out = parse_tool_calls(s)
        assert isinstance(out.text, str)
        for call in out.tool_calls:
            assert isinstance(call.arguments, dict)


def test_large_output_parses() -> None:
    """A long answer with many calls stays correct (no quadratic blow-up on the scanning path)."""
    call = '<tool_call>\n{"name": "echo", "arguments": {"text": "' + "x" * 2000 + '"}}\n</tool_call>\n'
    out = parse_tool_calls("prose " * 5000 + call * 200)
    assert len(out.tool_calls) == 200 and not out.errors


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = "[" * 20_000 + "]" * 20_000
    out = parse_tool_calls(f'<tool_call>{{"name": "f", "arguments": {{"x": {deep}}}}}</tool_call>')
    assert out.tool_calls == [] and "nested too deeply" in out.errors[0]
    assert coerce_arguments(deep)[0] is None
    assert parse_tool_calls(deep).text == deep  # an answer, not a call
