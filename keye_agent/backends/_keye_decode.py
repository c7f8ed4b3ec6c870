"""The decode engine of the Keye backend: one KV cache that remembers which tokens it holds, so a new prompt
prefills only what follows its longest common prefix with the last one, and a decode loop with optional grammar
masking. With ``decode_graph`` the one-token steps run through ``model.graph.DecodeGraph`` (a CUDA graph on CUDA,
the same fixed-shape step eagerly elsewhere); the prefill keeps the regular forward.

Pure torch and ``keye_agent.model``: no pydantic here, so benchmarks can drive it on a bare GPU machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from keye_agent.model.cache import StaticCache
from keye_agent.model.graph import DecodeGraph
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.sampling import SamplingParams, sample_next

__all__ = ["DecodeResult", "PrefixCache", "common_prefix", "decode"]

_MIN_CAPACITY = 1024  # first allocation, in tokens; the cache doubles from there up to the context window


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """The static KV cache of one sequence (K, V and DSA index keys of every layer) and the ids it holds.

    ``prepare(prompt, total)`` keeps the longest common prefix of the held ids and ``prompt`` (``StaticCache.truncate``)
    and makes room for ``total`` tokens: the first allocation holds ``min_capacity`` tokens (or ``total``), later ones
    double (copying the kept prefix), up to ``limit``.
    ``decode_graph``: run one-token steps through a :class:`DecodeGraph` bound to the current cache, one per
    dense/DSA mode, built on the first step that needs it (capture costs a fraction of a second on CUDA) and dropped
    when the cache is reallocated (the graph holds the old buffers). Each graph step attends over the whole
    allocated cache (it grows by doubling and never shrinks, so a slot that once held a long conversation stays
    that costly per token).
    Not thread-safe: the backend holds its lock around every use.
    """

    def __init__(self, model: KeyeForCausalLM, limit: int, min_capacity: int = _MIN_CAPACITY,
                 decode_graph: bool = False) -> None:
        self.model = model
        self.limit = limit
        self.min_capacity = min_capacity
        self.decode_graph = decode_graph
        self.cache: StaticCache | None = None
        self._graphs: dict[bool, DecodeGraph] = {}
        """The decode graphs of ``cache``, by sparse mode."""
        self.graph_builds = 0
        """DecodeGraphs built (captured on CUDA) so far: one per cache allocation and mode used."""
        self.graph_steps = 0
        """One-token steps run through a DecodeGraph so far."""
        self.ids: list[int] = []
        """The token ids whose K/V (and index keys) the cache holds, in order; len(ids) == cache.length."""
        self.prompt_len = 0
        """Length of the last prompt prepared (its answer follows it in ``ids``)."""
        self.rope_delta = 0
        """Position minus slot of the tokens after a multimodal prompt (vision tokens take fewer positions than
        slots); non-zero only while the cache holds one, which is then never reused for another prompt."""

    def prepare(self, prompt: Sequence[int], total: int, reuse: bool = True) -> int:
        """Keep the reusable prefix of ``prompt`` (at most len(prompt) - 1 ids: one must run to give logits),
        make room for ``total`` tokens, and return how many ids were kept."""
        if total > self.limit:
            raise ValueError(f"PrefixCache: {total} tokens exceed the cache limit {self.limit}")
        keep = min(common_prefix(self.ids, prompt), len(prompt) - 1) if reuse and not self.rope_delta else 0
        self.rope_delta = 0
        if self.cache is not None and self.model.sparse:
            keep = min(keep, self.cache.index_length)  # index keys missing (written in dense mode) cannot be reused
        self._ensure(total, keep)
        assert self.cache is not None
        self.cache.truncate(keep)
        del self.ids[keep:]
        self.prompt_len = len(prompt)
        return keep

    def _ensure(self, total: int, keep: int) -> None:
        old = self.cache
        if old is not None and old.max_seq_len >= total:
            return
        cap = max(self.min_capacity, total, 2 * old.max_seq_len if old is not None else 0)
        cap = min(cap, self.limit)
        # Free the old buffers before allocating when nothing is kept: two caches of a long context may not fit.
        self._graphs.clear()
        if keep == 0:
            self.cache = old = None
        new = self.model.new_cache(1, cap)
        if old is not None:
            new.k[:, :, :keep] = old.k[:, :, :keep]
            new.v[:, :, :keep] = old.v[:, :, :keep]
            if new.index_k is not None and old.index_k is not None:
                new.index_k[:, :, :keep] = old.index_k[:, :, :keep]
            new.length = keep
            new.index_length = min(old.index_length, keep)
        self.cache = new

    def prefill_embeds(self, ids: Sequence[int], embeds: torch.Tensor, positions: torch.Tensor,
                       rope_delta: int) -> torch.Tensor:
        """Prefill a whole multimodal prompt (the cache emptied by ``prepare(..., reuse=False)``): ``embeds``
        [1, T, hidden], ``positions`` [3, T]; later tokens run at slot + ``rope_delta``. Logits of the last, [V]."""
        assert self.cache is not None and self.cache.length == 0
        device = self.model.model.embed_tokens.weight.device
        x = torch.tensor([list(ids)], dtype=torch.long, device=device)
        try:
            logits = self.model(x, cache=self.cache, position_ids=positions[:, None].to(device), input_embeds=embeds,
                                last_only=True)[0, -1]
        except BaseException:
            self.reset()
            raise
        self.ids.extend(ids)
        self.rope_delta = rope_delta
        return logits

    def forward(self, ids: Sequence[int]) -> torch.Tensor:
        """Run ``ids`` after the held tokens; return the logits of the last one, float32 [V]."""
        assert self.cache is not None
        device = self.model.model.embed_tokens.weight.device
        x = torch.tensor([list(ids)], dtype=torch.long, device=device)
        try:
            if self.rope_delta:  # after a multimodal prompt: positions are not slots, so no fixed-shape graph step
                start = self.cache.length + self.rope_delta
                pos = torch.arange(start, start + len(ids), device=device).expand(3, 1, len(ids))
                logits = self.model(x, cache=self.cache, position_ids=pos, last_only=True)[0, -1]
            elif self.decode_graph and len(ids) == 1:
                # The logits live in the graph's output buffer: the caller may mask them in place, the next replay
                # rewrites the whole buffer.
                logits = self._graph()(x)[0, -1]
                self.graph_steps += 1
            else:
                logits = self.model(x, cache=self.cache, last_only=True)[0, -1]
        except BaseException:
            self.reset()  # a pass that failed half-way leaves no trustworthy state
            raise
        self.ids.extend(ids)
        return logits

    def _graph(self) -> DecodeGraph:
        """The decode graph of the current cache and sparse mode (built now if missing)."""
        assert self.cache is not None
        sparse = self.model.sparse
        g = self._graphs.get(sparse)
        if g is None or g.cache is not self.cache:
            # Capture writes at slot cache.length, past the held tokens (prepare made room for the step).
            g = self._graphs[sparse] = DecodeGraph(self.model, self.cache)
            self.graph_builds += 1
        return g

    def reset(self) -> None:
        """Forget every held token (the memory stays allocated)."""
        if self.cache is not None:
            self.cache.reset()
        self.ids.clear()
        self.prompt_len = 0
        self.rope_delta = 0


class TokenMask(Protocol):
    """What a grammar decoder offers the loop (see ``backends.constrained.GrammarDecoder``)."""

    def mask(self, logits: torch.Tensor) -> None: ...

    def accept(self, token_id: int) -> None: ...

    @property
    def terminated(self) -> bool: ...


@dataclass
class DecodeResult:
    """One generation: the ids generated (stop token excluded), why it ended, and where the time went."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    """"stop" (an end-of-turn token or the grammar's end), "length" (max_new), or "cancelled"."""
    prompt_tokens: int = 0
    reused_tokens: int = 0
    """Prompt tokens whose K/V came from the previous call (not prefilled again)."""
    prefill_s: float = 0.0
    """Seconds from the start (after any wait for the lock) to the first token: prefill and first sampling."""
    decode_s: float = 0.0

    @property
    def prefilled_tokens(self) -> int:
        return self.prompt_tokens - self.reused_tokens


def decode(pc: PrefixCache, prompt: Sequence[int], max_new: int, sampling: SamplingParams,
           stop_ids: Sequence[int], *, valid_vocab: int, reuse: bool = True, mask: TokenMask | None = None,
           generator: torch.Generator | None = None, cancel: threading.Event | None = None,
           on_token: Callable[[int], bool] | None = None,
           prefill: Callable[[PrefixCache], torch.Tensor] | None = None) -> DecodeResult:
    """Generate up to ``max_new`` ids after ``prompt`` on ``pc`` (call under the backend's lock).

    ``valid_vocab``: ids at or past it (padding of the lm_head past the tokenizer) are never sampled. ``mask``
    constrains each step (applied before sampling, fed each sampled id). ``on_token`` sees each generated id
    (stop ids excluded) and returns False to end generation there ("stop"); ``cancel`` ends it as "cancelled".
    ``prefill(pc)``: runs the whole prompt itself and returns the last logits (a multimodal prompt: no reuse).
    """
    out = DecodeResult(prompt_tokens=len(prompt))
    t0 = time.perf_counter()
    out.reused_tokens = pc.prepare(prompt, len(prompt) + max(max_new, 1), reuse and prefill is None)
    stops = set(stop_ids)
    need_context = sampling.repetition_penalty != 1.0
    new: list[int] = list(prompt[out.reused_tokens:])
    for step in range(max_new):
        if cancel is not None and cancel.is_set():
            out.finish_reason = "cancelled"
            break
        logits = prefill(pc) if prefill is not None and step == 0 else pc.forward(new)
        if logits.shape[-1] > valid_vocab:
            logits[valid_vocab:] = float("-inf")
        if mask is not None:
            mask.mask(logits)
        context = None
        if need_context:
            context = torch.tensor([list(prompt) + out.token_ids], dtype=torch.long, device=logits.device)
        token = int(sample_next(logits.view(1, -1), sampling, context, generator).item())
        if step == 0:
            out.prefill_s = time.perf_counter() - t0
        if mask is not None:
            mask.accept(token)
        if token in stops:
            out.finish_reason = "stop"
            break
        out.token_ids.append(token)
        if on_token is not None and on_token(token) is False:
            out.finish_reason = "stop"
            break
        if mask is not None and mask.terminated:
            out.finish_reason = "stop"
            break
        new = [token]
    out.decode_s = time.perf_counter() - t0 - out.prefill_s
    return out


def seeded_generator(device: torch.device, seed: int | None) -> torch.Generator | None:
    """A torch generator for ``seed`` on ``device`` (None leaves sampling to the global RNG)."""
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)

