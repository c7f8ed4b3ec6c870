"""Tokenizer helpers of the Keye backend: a stand-in tokenizer for presets (which ship none), and the xgrammar
vocabulary of a :class:`~keye_agent.model.tokenizer.KeyeTokenizer`.

The stand-in is a byte-level BPE trained here, in well under a second, on text in the Qwen3 chat format; it holds
the Qwen special and added tokens (``<|im_start|>``, ``<|im_end|>``, ``<tool_call>``, ``<think>``, ...), so every
part of the agent path runs on a preset with random weights. Its token ids are not Qwen's: use it for plumbing
checks and benchmarks of the machinery, never with real weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keye_agent.model.chat_template import render_qwen3
from keye_agent.model.tokenizer import KeyeTokenizer

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                       "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
"""Special tokens of the Qwen vocabulary (skipped by ``decode(skip_special_tokens=True)``)."""
QWEN_ADDED_TOKENS = ("<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>", "</tool_response>")
"""Added, non-special tokens: kept in decoded text, so the tool-call parser sees them."""

_TOOLS = [
    {"type": "function", "function": {"name": "web_search", "description": "Search the web and return results.",
                                      "parameters": {"type": "object", "properties": {
                                          "query": {"type": "string", "description": "What to search for."},
                                          "max_results": {"type": "integer", "minimum": 1}},
                                          "required": ["query"]}}},
    {"type": "function", "function": {"name": "run_code", "description": "Run Python code in a sandbox.",
                                      "parameters": {"type": "object", "properties": {
                                          "code": {"type": "string"}}, "required": ["code"]}}},
]
_PROSE = (
    "The weather in Paris is sunny today, with a high of 21 degrees. I will look up the population of the city "
    "and then compute the answer. The function returned an error: the argument 'path' must be a string. "
    "Let me try again with a different approach. import numpy as np\nprint(sum(range(10)))\n"
    "Results: 1. Example Domain - https://example.com/ This domain is for use in illustrative examples. "
    "The answer is 42. Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 -7 {\"a\": [1, 2, 3], \"b\": null}"
)


def _corpus() -> list[str]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful agent. Think, call tools, then answer."},
        {"role": "user", "content": "What is the weather in Paris, and how many people live there?"},
        {"role": "assistant", "content": "I will search.", "tool_calls": [
            {"type": "function", "function": {"name": "web_search", "arguments": {"query": "Paris weather"}}}]},
        {"role": "tool", "content": _PROSE},
        {"role": "assistant", "content": "<think>\nThe search worked.\n</think>\n\nIt is sunny in Paris."},
    ]
    return [render_qwen3(messages, _TOOLS), _PROSE] * 8


def plumbing_tokenizer(vocab_size: int) -> KeyeTokenizer:
    """A byte-level BPE with the Qwen special tokens and at most ``vocab_size`` ids (see the module docstring)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    n_extra = len(QWEN_SPECIAL_TOKENS) + len(QWEN_ADDED_TOKENS)
    if vocab_size < 256 + n_extra:
        raise ValueError(f"plumbing_tokenizer: vocab_size {vocab_size} is too small for 256 byte tokens and "
                         f"{n_extra} special tokens")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=min(vocab_size - len(QWEN_ADDED_TOKENS), 4096),
                                  special_tokens=list(QWEN_SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_ADDED_TOKENS])
    return KeyeTokenizer(tok, chat_template=None, bos_token=None, eos_token="<|im_end|>")


def xgrammar_vocab(tokenizer: KeyeTokenizer, vocab_size: int) -> tuple[list[str], str]:
    """The token strings by id (``""`` past the tokenizer's vocabulary, up to the model's ``vocab_size``) and the
    vocabulary kind xgrammar needs: "byte_level" (GPT-2/Qwen style, spaces as "Ġ"), "byte_fallback"
    (SentencePiece with ``<0x0A>`` byte tokens) or "raw"."""
    n = min(tokenizer.vocab_size, vocab_size)
    vocab = [tokenizer.id_to_token(i) or "" for i in range(n)] + [""] * (vocab_size - n)
    kind = "raw"
    if any(t == "<0x0A>" for t in vocab):
        kind = "byte_fallback"
    elif any("\u0120" in t or "\u010a" in t for t in vocab):
        kind = "byte_level"
    return vocab, kind


def tool_call_grammar(tokenizer: KeyeTokenizer, vocab_size: int, stop_token_ids: Sequence[int]) -> Any:
    """A :class:`~keye_agent.backends.constrained.ToolCallGrammar` for ``tokenizer`` over the model's logits width."""
    import xgrammar as xgr

    from .constrained import ToolCallGrammar

    vocab, kind = xgrammar_vocab(tokenizer, vocab_size)
    vocab_type = {"byte_level": xgr.VocabType.BYTE_LEVEL, "byte_fallback": xgr.VocabType.BYTE_FALLBACK,
                  "raw": xgr.VocabType.RAW}[kind]
    info = xgr.TokenizerInfo(vocab, vocab_type=vocab_type, vocab_size=vocab_size,
                             stop_token_ids=list(stop_token_ids))
    return ToolCallGrammar(info)
