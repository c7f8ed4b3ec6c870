"""Generation: the one decode loop of every local backend (Keye and transformers), over a small step interface.

:func:`decode_tokens` runs prefill then one-token steps through a :class:`TokenStep` (``prefill(ids)`` and
``step(token_id)``, each returning the logits of the last position), masks, samples (``sampling.sample_next``),
and yields the ids. :class:`CacheStep` is the step of a Keye model over a static cache (optionally through a
captured ``graph.DecodeGraph``); the Keye backend's prefix cache and the transformers backend bring their own.
:func:`stream_generate` and :func:`generate` are the plain model-level entry points.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from keye_agent.model.cache import StaticCache
from keye_agent.model.graph import DecodeGraph
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.sampling import SamplingParams, sample_next

__all__ = ["CacheStep", "DecodeResult", "GenerationOutput", "TokenMask", "TokenStep", "decode_tokens", "generate",
           "run_decode", "stream_generate"]


class TokenStep(Protocol):
    """How the decode loop runs a model: logits [V] of the last position, after the tokens already held."""

    def prefill(self, ids: Sequence[int]) -> torch.Tensor:
        """Run the prompt's ids not held yet (at least one)."""
        ...

    def step(self, token_id: int) -> torch.Tensor:
        """Run one generated token."""
        ...


class TokenMask(Protocol):
    """A constraint on each step, e.g. a grammar (``backends.constrained.GrammarDecoder``).

    A class may also offer ``mask_rows(masks, logits [R, V])`` (a classmethod masking row i by masks[i], in place):
    the batch engine (``model.batch``) then masks all its rows of one step in one call (xgrammar's batched bitmask).
    """

    def mask(self, logits: torch.Tensor) -> None: ...

    def accept(self, token_id: int) -> None: ...

    @property
    def terminated(self) -> bool: ...


@dataclass
class DecodeResult:
    """One generation: the ids generated (stop token excluded), why it ended, and where the time went."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    """"stop" (an end-of-turn token, the grammar's end, or the caller), "length" (max_new), or "cancelled"."""
    stop_token_id: int | None = None
    """The stop id that ended generation, if one did."""
    prompt_tokens: int = 0
    reused_tokens: int = 0
    """Prompt tokens whose K/V came from a previous call (not prefilled again)."""
    prefill_s: float = 0.0
    """Seconds from the start to the first token: prefill and first sampling."""
    decode_s: float = 0.0
    step_times: list[float] = field(default_factory=list)
    """Seconds of each step (forward, mask and sampling), in order."""

    @property
    def prefilled_tokens(self) -> int:
        return self.prompt_tokens - self.reused_tokens


GenerationOutput = DecodeResult
"""The result of :func:`generate` (the same record the backends keep)."""


def decode_tokens(step: TokenStep, prompt: Sequence[int], new: Sequence[int], max_new: int,
                  sampling: SamplingParams, stop_ids: Sequence[int], out: DecodeResult, *,
                  valid_vocab: int | None = None, mask: TokenMask | None = None,
                  generator: torch.Generator | None = None, cancel: threading.Event | None = None,
                  started: float | None = None) -> Iterator[int]:
    """Yield up to ``max_new`` ids after ``prompt``, recording them (and why generation ended) in ``out``.

    ``new``: the ids of ``prompt`` the step does not hold yet (prefilled first). ``valid_vocab``: ids at or past it
    (lm_head padding past the tokenizer) are never sampled. ``mask`` constrains each step (applied before sampling,
    fed each sampled id); a terminated mask ends generation as "stop", so does a stop id (not yielded); ``cancel``
    ends it as "cancelled". A caller that stops iterating sets ``out.finish_reason`` itself. ``started``: the
    ``time.perf_counter()`` that ``out.prefill_s`` counts from (default: now), for a caller that prepared a cache.
    """
    t0 = time.perf_counter() if started is None else started
    stops = set(stop_ids)
    context: torch.Tensor | None = None  # prompt + generated ids, for the repetition penalty
    n_prompt = len(prompt)
    token = -1
    try:
        for i in range(max_new):
            if cancel is not None and cancel.is_set():
                out.finish_reason = "cancelled"
                return
            ts = time.perf_counter()
            logits = step.prefill(new) if i == 0 else step.step(token)  # [V]
            if valid_vocab is not None and logits.shape[-1] > valid_vocab:
                logits[valid_vocab:] = float("-inf")
            if mask is not None:
                mask.mask(logits)
            seen = None
            if sampling.repetition_penalty != 1.0:
                if context is None:
                    context = torch.empty(1, n_prompt + max_new, dtype=torch.long, device=logits.device)
                    context[0, :n_prompt] = torch.tensor(list(prompt), dtype=torch.long)
                seen = context[:, : n_prompt + i]
            token = int(sample_next(logits.view(1, -1), sampling, seen, generator).item())
            if i == 0:
                out.prefill_s = time.perf_counter() - t0
            if mask is not None:
                mask.accept(token)
            out.step_times.append(time.perf_counter() - ts)
            if token in stops:
                out.finish_reason, out.stop_token_id = "stop", token
                return
            out.token_ids.append(token)
            if context is not None:
                context[0, n_prompt + i] = token
            yield token
            if mask is not None and mask.terminated:
                out.finish_reason = "stop"
                return
        out.finish_reason = "length"
    finally:
        out.decode_s = time.perf_counter() - t0 - out.prefill_s


def run_decode(tokens: Iterator[int], out: DecodeResult, on_token: Callable[[int], bool] | None) -> DecodeResult:
    """Drain :func:`decode_tokens`; ``on_token`` sees each id and returns False to end generation ("stop")."""
    for token in tokens:
        if on_token is not None and on_token(token) is False:
            out.finish_reason = "stop"
            break
    return out


class CacheStep:
    """The :class:`TokenStep` of a Keye model over a static cache. With ``decode_graph`` one-token steps run through
    ``graph.DecodeGraph`` (captured as a CUDA graph on CUDA; elsewhere the same fixed-shape step runs eagerly)."""

    def __init__(self, model: KeyeForCausalLM, cache: StaticCache, decode_graph: bool = False) -> None:
        self.model, self.cache, self.decode_graph = model, cache, decode_graph
        self.device = model.model.embed_tokens.weight.device
        self._graph: DecodeGraph | None = None

    def prefill(self, ids: Sequence[int]) -> torch.Tensor:
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        return self.model(x, cache=self.cache, last_only=True)[0, -1]

    def step(self, token_id: int) -> torch.Tensor:
        x = torch.tensor([[token_id]], dtype=torch.long, device=self.device)
        if not self.decode_graph:
            return self.model(x, cache=self.cache, last_only=True)[0, -1]
        self._graph = self._graph or DecodeGraph(self.model, self.cache)
        return self._graph(x)[0, -1]


@torch.inference_mode()
def stream_generate(model: KeyeForCausalLM, prompt_ids: Sequence[int], max_new_tokens: int,
                    sampling: SamplingParams | None = None, stop_token_ids: Sequence[int] | None = None,
                    cache: StaticCache | None = None, decode_graph: bool = False) -> Iterator[int]:
    """Yield generated token ids one at a time; the generator's return value is a ``GenerationOutput``.

    With ``cache`` given, its first ``cache.length`` tokens must be a prefix of ``prompt_ids`` (the caller keeps
    track): only the rest is prefilled, which is how a backend reuses the KV of a previous turn. Without one, a
    cache of len(prompt_ids) + max_new_tokens is allocated. A stop token ends generation and is not yielded.
    With ``decode_graph`` the one-token steps run through ``graph.DecodeGraph`` (captured as a CUDA graph on CUDA,
    about 0.2-0.3 s per call for the 30B model, then one launch per token; elsewhere the same fixed-shape step runs
    eagerly); its attention spans the whole cache, so size the cache to the conversation.
    """
    sampling = sampling or SamplingParams()
    stops = model.config.stop_token_ids if stop_token_ids is None else stop_token_ids
    prompt = list(prompt_ids)
    if not prompt:
        raise ValueError("stream_generate: prompt_ids must not be empty")
    if max_new_tokens < 0:
        raise ValueError(f"stream_generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    vocab = model.config.vocab_size
    if min(prompt) < 0 or max(prompt) >= vocab:
        raise ValueError(f"stream_generate: prompt token ids must lie in 0..{vocab - 1}")
    if cache is None:
        cache = model.new_cache(1, len(prompt) + max(max_new_tokens, 1))
    elif cache.length >= len(prompt):
        cache.truncate(len(prompt) - 1)  # at least one token must run to give the next logits
    out = GenerationOutput(prompt_tokens=len(prompt), reused_tokens=cache.length)
    if max_new_tokens == 0:
        return out
    if len(prompt) + max_new_tokens - 1 > cache.max_seq_len:
        raise ValueError(f"stream_generate: prompt ({len(prompt)}) + max_new_tokens ({max_new_tokens}) exceeds "
                         f"the cache's max_seq_len {cache.max_seq_len}")
    step = CacheStep(model, cache, decode_graph)
    gen = None if sampling.seed is None else torch.Generator(device=step.device).manual_seed(sampling.seed)
    yield from decode_tokens(step, prompt, prompt[cache.length:], max_new_tokens, sampling, stops, out,
                             generator=gen)
    return out


def generate(model: KeyeForCausalLM, prompt_ids: Sequence[int], max_new_tokens: int,
             sampling: SamplingParams | None = None, stop_token_ids: Sequence[int] | None = None,
             cache: StaticCache | None = None, decode_graph: bool = False) -> GenerationOutput:
    """Run ``stream_generate`` to the end and return its ``GenerationOutput``."""
    it = stream_generate(model, prompt_ids, max_new_tokens, sampling, stop_token_ids, cache, decode_graph)
    while True:
        try:
            next(it)
        except StopIteration as stop:
            return stop.value
