"""Grammar-constrained tool calls without a model: random logits masked by the grammar stand in for any model, so
whatever the "model" prefers, the output must hold valid calls. The vocabulary is a small raw one (characters plus
a few multi-character tokens, the way BPE vocabularies mix them); the real-model test is test_transformers_constrained.
"""

from __future__ import annotations

import json

import pytest
import torch
from jsonschema import Draft202012Validator

from keye_agent.backends.constrained import ToolCallGrammar, tool_call_structural_tag
from keye_agent.backends.parsing import parse_tool_calls
from keye_agent.errors import ConfigError, ModelOutputError

STOP = "</s>"
VOCAB = [STOP, *[chr(c) for c in range(32, 127)], "\n", "<tool_call>", "</tool_call>", "<think>", "</think>",
         '{"', '": ', '", "', "name", "arguments", "lookup", "true", "false", "null", "12", "ab", "  ", "\n  "]
PAD = 7  # extra logits columns past the vocabulary, as padded lm_heads have

TOOLS = [
    {"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {
        "type": "object", "properties": {"key": {"type": "string", "maxLength": 8}},
        "required": ["key"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "book", "description": "d", "parameters": {
        "type": "object",
        "properties": {
            "seats": {"type": "integer", "minimum": 1, "maximum": 9},
            "class": {"type": "string", "enum": ["eco", "biz"]},
            "meal": {"type": "boolean"},
            "names": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2},
            "when": {"type": "object", "properties": {"day": {"type": "integer", "minimum": 1, "maximum": 31}},
                     "required": ["day"], "additionalProperties": False},
        },
        "required": ["seats", "class", "when"], "additionalProperties": False}}},
]
VALIDATORS = {t["function"]["name"]: Draft202012Validator(t["function"]["parameters"]) for t in TOOLS}
# nudges that make random walks finish: closers and the stop token a little likelier than the rest
BIAS = {VOCAB.index(t): 3.0 for t in (STOP, '"', "}", "]", "</tool_call>", "</think>")}


@pytest.fixture(scope="module")
def grammar() -> ToolCallGrammar:
    return ToolCallGrammar.from_vocab(VOCAB, stop_token_ids=[0], vocab_size=len(VOCAB), byte_level=False)


def _walk(grammar: ToolCallGrammar, tool_choice: str, seed: int, *, parallel: bool = True,
          allow_reasoning: bool = False, max_steps: int = 400, prefix: tuple[str, ...] = ()) -> str | None:
    """Sample from random logits under the grammar (after forcing ``prefix``); the text, or None when the walk
    did not finish."""
    gen = torch.Generator().manual_seed(seed)
    dec = grammar.decoder(TOOLS, tool_choice, parallel=parallel, allow_reasoning=allow_reasoning)
    assert dec is not None
    for tok in prefix:
        dec.accept(VOCAB.index(tok))
    out: list[str] = list(prefix)
    for _ in range(max_steps):
        logits = torch.randn(len(VOCAB) + PAD, generator=gen) * 2
        for i, b in BIAS.items():
            logits[i] += b
        dec.mask(logits)
        assert torch.isinf(logits[len(VOCAB):]).all()  # padded columns are never allowed
        token = int(torch.argmax(logits))
        dec.accept(token)
        if dec.terminated:
            assert token == 0
            return "".join(out)
        out.append(VOCAB[token])
    return None


def _check_calls(text: str) -> list[str]:
    parsed = parse_tool_calls(text)
    assert parsed.errors == [], (text, parsed.errors)
    for call in parsed.tool_calls:
        problems = [e.message for e in VALIDATORS[call.name].iter_errors(call.arguments)]
        assert problems == [], (text, problems)
    return [c.name for c in parsed.tool_calls]


def test_required_always_yields_valid_calls_and_nothing_else(grammar: ToolCallGrammar) -> None:
    finished = [t for t in (_walk(grammar, "required", s) for s in range(40)) if t is not None]
    assert len(finished) >= 30
    for text in finished:
        names = _check_calls(text)
        assert names, text
        assert text.startswith("<tool_call>")  # held from the first token: no prose before the call
        assert parse_tool_calls(text).text == ""
    seen = {n for text in finished for n in _check_calls(text)}
    assert seen == {"lookup", "book"}  # both tools reachable: the grammar does not collapse to one


def test_named_tool_gives_exactly_one_call_of_it(grammar: ToolCallGrammar) -> None:
    finished = [t for t in (_walk(grammar, "book", s) for s in range(20)) if t is not None]
    assert len(finished) >= 15
    for text in finished:
        assert _check_calls(text) == ["book"]


def test_auto_allows_text_and_every_call_is_valid(grammar: ToolCallGrammar) -> None:
    finished = [t for t in (_walk(grammar, "auto", s) for s in range(40)) if t is not None]
    assert len(finished) >= 30
    for text in finished:
        _check_calls(text)


def test_auto_calls_after_free_text() -> None:
    """A trigger in free text starts a call that the grammar then holds to a schema (forced text, then the walk)."""
    vocab = [STOP, *[chr(c) for c in range(32, 127)], "\n", "<tool_call>"]
    g = ToolCallGrammar.from_vocab(vocab, stop_token_ids=[0], byte_level=False)
    dec = g.decoder(TOOLS, "auto")
    assert dec is not None
    prefix = "Let me check.\n<tool_call>\n"
    for ch in ["L", "e", "t", " ", "m", "e", " ", "c", "h", "e", "c", "k", ".", "\n", "<tool_call>", "\n"]:
        dec.accept(vocab.index(ch))
    logits = torch.zeros(len(vocab))
    dec.mask(logits)
    allowed = {vocab[i] for i in range(len(vocab)) if not torch.isinf(logits[i])}
    assert allowed == {"{"}, (prefix, allowed)


def test_parallel_false_stops_after_the_first_call(grammar: ToolCallGrammar) -> None:
    for tool_choice in ("required", "auto"):
        finished = [t for t in (_walk(grammar, tool_choice, s, parallel=False) for s in range(25)) if t is not None]
        assert finished
        for text in finished:
            assert len(_check_calls(text)) <= 1


def test_reasoning_block_may_come_first(grammar: ToolCallGrammar) -> None:
    dec = grammar.decoder(TOOLS, "required", allow_reasoning=True)
    assert dec is not None
    logits = torch.zeros(len(VOCAB))
    dec.mask(logits)
    assert {VOCAB[i] for i in range(len(VOCAB)) if not torch.isinf(logits[i])} == {"<", "<think>", "<tool_call>"}
    think = ("<think>", "ab", "c", "</think>", "\n", "\n")
    finished = [t for t in (_walk(grammar, "required", s, allow_reasoning=True, prefix=think) for s in range(10))
                if t is not None]
    assert finished
    for text in finished:
        assert parse_tool_calls(text).reasoning == "abc"
        assert _check_calls(text)


def test_nothing_to_constrain_and_bad_choices(grammar: ToolCallGrammar) -> None:
    assert grammar.decoder(TOOLS, "none") is None
    assert grammar.decoder(None, "auto") is None
    assert tool_call_structural_tag([], "auto") is None
    with pytest.raises(ConfigError, match="no tools were offered"):
        grammar.decoder([], "required")
    with pytest.raises(ConfigError, match="'fly', which is not among the offered tools"):
        grammar.decoder(TOOLS, "fly")
    with pytest.raises(ConfigError, match="not an OpenAI function schema"):
        grammar.decoder([{"type": "function"}], "auto")


def test_token_outside_the_mask_is_refused(grammar: ToolCallGrammar) -> None:
    dec = grammar.decoder(TOOLS, "required")
    assert dec is not None
    with pytest.raises(ModelOutputError, match="outside the grammar mask"):
        dec.accept(VOCAB.index("x"))  # a required call must begin with <tool_call>


def test_compiled_grammars_are_cached(grammar: ToolCallGrammar) -> None:
    a = grammar.compile(TOOLS, "required")
    assert grammar.compile(json.loads(json.dumps(TOOLS)), "required") is a
    assert grammar.compile(TOOLS, "auto") is not a
