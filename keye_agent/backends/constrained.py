"""Grammar-constrained tool calls with xgrammar structural tags, for any tokenizer and any torch model.

The model answers in the Hermes/Qwen3 format (``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``).
A structural tag (built by :func:`keye_agent.formats.hermes.structural_tag`) holds everything between
``<tool_call>`` and ``</tool_call>`` to the JSON Schema of a registered tool, so each call the model emits parses
and validates by construction. ``tool_choice`` picks the shape:

- ``"auto"``: free text, and any number of calls; a call starts only when the model writes ``<tool_call>``.
- ``"required"``: one or more calls and nothing else, from the first token (an optional ``<think>`` block first
  when ``allow_reasoning`` is set).
- a tool name: exactly one call of that tool, from the first token.
- ``"none"``, or no tools: no grammar at all.

Nothing here knows a model: :class:`ToolCallGrammar` takes a Hugging Face tokenizer (or a raw vocabulary) and
:class:`GrammarDecoder` masks a torch logits row, so the Keye backend reuses it as is::

    grammar = ToolCallGrammar.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
    decoder = grammar.decoder(tool_schemas, "required")
    for each step:
        decoder.mask(logits)          # logits: [vocab] or [1, vocab], masked in place
        token = sample(logits)
        decoder.accept(token)
        if decoder.terminated: break
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
import xgrammar as xgr
from xgrammar.structural_tag import StructuralTag

from keye_agent.errors import ConfigError, ModelOutputError
from keye_agent.formats.hermes import (
    CALL_CLOSE,
    CALL_OPEN,
    MAX_JSON_WHITESPACE,
    THINK_CLOSE,
    THINK_OPEN,
    function_of,
    structural_tag,
)

__all__ = ["CALL_CLOSE", "CALL_OPEN", "MAX_JSON_WHITESPACE", "THINK_CLOSE", "THINK_OPEN", "GrammarDecoder",
           "ToolCallGrammar", "tool_call_structural_tag"]


def tool_call_structural_tag(
    tools: Sequence[dict[str, Any]] | None, tool_choice: str = "auto", *, allow_reasoning: bool = False,
    parallel: bool = True,
) -> StructuralTag | None:
    """The xgrammar structural tag of :func:`keye_agent.formats.hermes.structural_tag` (which documents the
    shapes of ``tool_choice``); None when nothing is constrained. Raises :class:`ConfigError` for a
    ``tool_choice`` naming no offered tool, or ``"required"`` with no tools."""
    spec = structural_tag(tools, tool_choice, allow_reasoning=allow_reasoning, parallel=parallel)
    return None if spec is None else StructuralTag.model_validate(spec)


class GrammarDecoder:
    """The grammar state of one generation: masks logits, accepts the sampled tokens.

    ``mask_s`` adds up the time spent building and applying masks, ``steps`` counts masked steps (for benchmarks).
    """

    def __init__(self, compiled: xgr.CompiledGrammar, vocab_size: int) -> None:
        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.vocab_size = vocab_size
        self.mask_s = 0.0
        self.steps = 0
        self.step_times: list[float] = []
        """Seconds spent on the mask at each step, in order."""

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of every token the grammar forbids next to -inf, in place. ``logits``: [V] or [1, V]."""
        t0 = time.perf_counter()
        row = logits.view(1, -1)
        self._matcher.fill_next_token_bitmask(self._bitmask)
        bitmask = self._bitmask if row.device.type == "cpu" else self._bitmask.to(row.device, non_blocking=True)
        xgr.apply_token_bitmask_inplace(row, bitmask, vocab_size=min(self.vocab_size, row.shape[-1]))
        if row.shape[-1] > self.vocab_size:  # padded lm_head columns are never valid tokens
            row[:, self.vocab_size:] = float("-inf")
        dt = time.perf_counter() - t0
        self.mask_s += dt
        self.steps += 1
        self.step_times.append(dt)

    @classmethod
    def mask_rows(cls, decoders: Sequence[GrammarDecoder], logits: torch.Tensor) -> None:
        """Mask row i of ``logits`` [R, V] by ``decoders[i]``, in place: one bitmask for all rows, one copy to the
        device and one apply (the batch engine's path; ``mask`` is this for one row)."""
        t0 = time.perf_counter()
        vocab = min(d.vocab_size for d in decoders)
        bitmask = xgr.allocate_token_bitmask(len(decoders), vocab)
        for i, d in enumerate(decoders):
            d._matcher.fill_next_token_bitmask(bitmask, i)
        if logits.device.type != "cpu":
            bitmask = bitmask.to(logits.device, non_blocking=True)
        xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=min(vocab, logits.shape[-1]))
        if logits.shape[-1] > vocab:  # padded lm_head columns are never valid tokens
            logits[:, vocab:] = float("-inf")
        dt = (time.perf_counter() - t0) / len(decoders)
        for d in decoders:
            d.mask_s += dt
            d.steps += 1
            d.step_times.append(dt)

    def accept(self, token_id: int) -> None:
        """Advance the grammar by one sampled token. A token outside the mask is a bug, not model output."""
        if not self._matcher.accept_token(int(token_id)):
            raise ModelOutputError(f"token {token_id} was sampled outside the grammar mask; this is a bug in "
                                   "the decode loop (was the mask applied before sampling?)")

    @property
    def terminated(self) -> bool:
        """The grammar is complete and accepted a stop token: the turn is over."""
        return self._matcher.is_terminated()


class ToolCallGrammar:
    """Compiles tool-call grammars for one tokenizer and hands out a :class:`GrammarDecoder` per generation.

    Compiled grammars are cached by (tools, tool_choice, allow_reasoning), so a loop that offers the same tools at
    every step compiles once. Thread-safe (a batching backend compiles from many worker threads at once).
    """

    def __init__(self, info: xgr.TokenizerInfo, *, cache_size: int = 32) -> None:
        self.info = info
        self.vocab_size = info.vocab_size
        self._compiler = xgr.GrammarCompiler(info, max_threads=2)
        self._cache: dict[str, xgr.CompiledGrammar] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def from_huggingface(
        cls, tokenizer: Any, *, vocab_size: int | None = None, stop_token_ids: Sequence[int] | None = None
    ) -> ToolCallGrammar:
        """For a Hugging Face tokenizer. ``vocab_size`` is the model's logits width (it may be padded past the
        tokenizer's); ``stop_token_ids`` end a turn (default: the tokenizer's eos)."""
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids) if stop_token_ids else None)
        return cls(info)

    @classmethod
    def from_vocab(
        cls, vocab: Sequence[str], *, stop_token_ids: Sequence[int], vocab_size: int | None = None,
        byte_level: bool = True,
    ) -> ToolCallGrammar:
        """For a raw vocabulary (token strings by id), e.g. from a ``tokenizers`` JSON file."""
        vocab_type = xgr.VocabType.BYTE_LEVEL if byte_level else xgr.VocabType.RAW
        info = xgr.TokenizerInfo(list(vocab), vocab_type=vocab_type, vocab_size=vocab_size,
                                 stop_token_ids=list(stop_token_ids))
        return cls(info)

    def compile(
        self, tools: Sequence[dict[str, Any]] | None, tool_choice: str = "auto", *, allow_reasoning: bool = False,
        parallel: bool = True,
    ) -> xgr.CompiledGrammar | None:
        """The compiled grammar, or None when ``tool_choice``/``tools`` leave nothing to constrain."""
        tag = tool_call_structural_tag(tools, tool_choice, allow_reasoning=allow_reasoning, parallel=parallel)
        if tag is None:
            return None
        key = json.dumps([tools, tool_choice, allow_reasoning, parallel], sort_keys=True, default=str)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            try:
                compiled = self._compiler.compile_structural_tag(tag)
            except (RuntimeError, ValueError) as e:
                names = ", ".join(function_of(t)["name"] for t in tools or ())
                raise ConfigError(
                    f"xgrammar cannot compile the tool schemas ({names}) into a grammar: {e}",
                    hint="simplify the schema (xgrammar supports most of JSON Schema), or turn constrained decoding "
                         "off",
                ) from e
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = compiled
            return compiled

    def decoder(
        self, tools: Sequence[dict[str, Any]] | None, tool_choice: str = "auto", *, allow_reasoning: bool = False,
        parallel: bool = True,
    ) -> GrammarDecoder | None:
        """A fresh decoder for one generation, or None when nothing is constrained."""
        compiled = self.compile(tools, tool_choice, allow_reasoning=allow_reasoning, parallel=parallel)
        return None if compiled is None else GrammarDecoder(compiled, self.vocab_size)
