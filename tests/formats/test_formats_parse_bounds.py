"""The Hermes parser does bounded work on hostile output (issue 24 item 10): each block is read only up to the next
``<tool_call>``, nesting past a depth stops the scan, the lenient passes have a size cap, and output past the
parser's cap is a typed error. Work is counted (string literals the scanner visits), never timed; the timings
are in benchmarks/parse_tool_calls.py."""

from __future__ import annotations

import pytest

from keye_agent.errors import ModelOutputError
from keye_agent.formats import _lenient_json, hermes
from keye_agent.formats._lenient_json import MAX_DEPTH, MAX_LENIENT_CHARS, decode_values, normalize

UNCLOSED = '<tool_call>\n{"name": "f", "arguments": {"a": "x' + "y" * 40 + '"\n'


@pytest.fixture
def strings_visited(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the string literals the bracket scanner reads, the unit of its work."""
    calls = [0]
    real = _lenient_json._string_end

    def counting(text: str, i: int, stop: int | None = None) -> int | None:
        calls[0] += 1
        return real(text, i, stop)

    monkeypatch.setattr(_lenient_json, "_string_end", counting)
    return calls


def test_repeated_unclosed_blocks_are_each_read_once(strings_visited: list[int]) -> None:
    """800 unclosed blocks (61 KB in the report, 8.8 s): a block's scan used to run to the end of the text."""
    text = UNCLOSED * 800
    out = hermes.parse(text)
    assert out.calls == [] and len(out.errors) == 800
    assert all("is cut off" in e and "where the next <tool_call> begins" in e for e in out.errors[:-1])
    assert "when the output ends" in out.errors[-1]
    # each block holds 5 string literals; a scan reaching past its block would visit those of every later block
    assert strings_visited[0] <= 6 * 800


def test_closed_calls_after_unclosed_ones_still_parse() -> None:
    good = '<tool_call>\n{"name": "g", "arguments": {"k": True}}\n</tool_call>'
    out = hermes.parse(UNCLOSED * 50 + good)
    assert [(c.name, c.arguments) for c in out.calls] == [("g", {"k": True})]
    assert len(out.errors) == 50


def test_a_dropped_brace_before_the_closing_tag_is_repaired_even_when_another_block_follows() -> None:
    text = ('<tool_call>{"name": "f", "arguments": {"a": 1}</tool_call>\n'
            '<tool_call>{"name": "g", "arguments": {}}</tool_call>')
    out = hermes.parse(text)
    assert [(c.name, c.arguments) for c in out.calls] == [("f", {"a": 1}), ("g", {})] and not out.errors


def test_deep_python_literal_nesting_stops_at_the_depth_cap(strings_visited: list[int]) -> None:
    """100,000-deep single-quoted dicts (>2 s in the report): the scan stops past MAX_DEPTH levels."""
    deep = "{'a': " * 100_000 + "1" + "}" * 100_000
    out = hermes.parse('<tool_call>{"name": "f", "arguments": ' + deep + "}</tool_call>")
    assert out.calls == [] and len(out.errors) == 1 and "nested too deeply" in out.errors[0]
    assert strings_visited[0] <= MAX_DEPTH + 10


def test_deep_nesting_decoded_directly_is_named_as_such() -> None:
    values, why = decode_values("['a', " * 100_000 + "1" + "]" * 100_000)
    assert values is None and why is not None and "nested too deeply" in why


def test_lenient_decoding_has_a_size_cap() -> None:
    """A trailing comma in an array past MAX_LENIENT_CHARS (10 MB took 22 s): strict JSON only, and it says so."""
    big = "[" + "1, " * (MAX_LENIENT_CHARS // 3 + 1) + "]"
    values, why = decode_values(big)
    assert values is None and why is not None
    assert f"past the {MAX_LENIENT_CHARS:,}" in why and "write strict JSON" in why
    small = "[" + "1, " * 30_000 + "]"  # 90 KB: under the cap, repaired
    values, why = decode_values(small)
    assert why is None and values == [[1] * 30_000]


def test_output_past_the_parser_cap_is_a_typed_error() -> None:
    with pytest.raises(ModelOutputError, match="at most 2,000,000") as e:
        hermes.parse("<tool_call>" + "x" * hermes.MAX_OUTPUT_CHARS)
    assert "max_tokens" in e.value.problems[0]
    plain = "word " * (hermes.MAX_OUTPUT_CHARS // 5 + 1)  # a long plain answer has nothing to parse: kept
    assert hermes.parse(plain).text == plain.strip()


@pytest.mark.parametrize(("raw", "want"), [
    ("{'a': 'it\\'s', 'b': True, 'c': None,}", '{"a": "it\'s", "b": true, "c": null}'),
    ('{key: "True, # not a comment", // note\n "n": [1, 2,\n]}', '{"key": "True, # not a comment", \n "n": [1, 2\n]}'),
    ("{'q': 'say \"hi\"'}", '{"q": "say \\"hi\\""}'),
    ("[1, 2, /* two */ 3] # end", "[1, 2,  3] "),
    ("{'open': 'never closed}", "{\"open\": 'never closed}"),
    ('{"a": 1}\\n{"b": 2}', '{"a": 1} {"b": 2}'),
])
def test_normalize_rewrites_only_outside_strings(raw: str, want: str) -> None:
    assert normalize(raw) == want


def test_a_strict_value_may_hold_the_opening_tag_in_a_string() -> None:
    text = ('<tool_call>{"name": "w", "arguments": {"text": "wrap calls in <tool_call> tags"}}</tool_call>\n'
            '<tool_call>{"name": "v", "arguments": {}}</tool_call>')
    out = hermes.parse(text)
    assert [(c.name, c.arguments) for c in out.calls] == [("w", {"text": "wrap calls in <tool_call> tags"}),
                                                          ("v", {})]
    assert not out.errors
