"""The KV cache of the Keye backend: one static cache that remembers which tokens it holds, so a new prompt
prefills only what follows its longest common prefix with the last one. It is the ``model.generate.TokenStep`` the
one decode loop (``model.generate.decode_tokens``) runs; with ``decode_graph`` its one-token steps go through
``model.graph.DecodeGraph`` (a CUDA graph on CUDA, the same fixed-shape step eagerly elsewhere), the prefill keeps
the regular forward.

Pure torch and ``keye_agent.model``: no pydantic here, so benchmarks can drive it on a bare GPU machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from keye_agent.model.cache import StaticCache
from keye_agent.model.generate import DecodeResult, TokenMask, decode_tokens, run_decode
from keye_agent.model.graph import DecodeGraph
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.sampling import SamplingParams

__all__ = ["DecodeResult", "PrefixCache", "TokenMask", "common_prefix", "decode"]

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
        slots); non-zero only while the cache holds one."""
        self.media_key: Any = None
        """Identifies the images and videos of the multimodal prompt held (None: a text prompt). A later prompt
        continues it only with the same key and a common prefix past its last vision token (``vision_span``)."""
        self.vision_span = 0

    def prepare(self, prompt: Sequence[int], total: int, reuse: bool = True, media_key: Any = None) -> int:
        """Keep the reusable prefix of ``prompt`` (at most len(prompt) - 1 ids: one must run to give logits),
        make room for ``total`` tokens, and return how many ids were kept. ``media_key``: that of the prompt's
        images and videos (None for text); the held prefix counts only when it holds the same media, whole."""
        if total > self.limit:
            raise ValueError(f"PrefixCache: {total} tokens exceed the cache limit {self.limit}")
        keep = min(common_prefix(self.ids, prompt), len(prompt) - 1) if reuse else 0
        if self.cache is not None and self.model.sparse:
            keep = min(keep, self.cache.index_length)  # index keys missing (written in dense mode) cannot be reused
        if media_key != self.media_key or (media_key is not None and keep < self.vision_span):
            keep = 0  # pad ids look alike whatever the image: only the same media, whole, may be reused
        if keep == 0:
            self.rope_delta, self.media_key, self.vision_span = 0, None, 0
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
                       rope_delta: int, media_key: Any = None, vision_span: int = 0) -> torch.Tensor:
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
        self.rope_delta, self.media_key, self.vision_span = rope_delta, media_key, vision_span
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

    def prefill(self, ids: Sequence[int]) -> torch.Tensor:
        """The prompt's ids not held yet (``model.generate.TokenStep``)."""
        return self.forward(ids)

    def step(self, token_id: int) -> torch.Tensor:
        """One generated token (``model.generate.TokenStep``): through the decode graph when it is on."""
        return self.forward((token_id,))

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
        self.rope_delta, self.media_key, self.vision_span = 0, None, 0


def decode(pc: PrefixCache, prompt: Sequence[int], max_new: int, sampling: SamplingParams,
           stop_ids: Sequence[int], *, valid_vocab: int, reuse: bool = True, mask: TokenMask | None = None,
           generator: torch.Generator | None = None, cancel: threading.Event | None = None,
           on_token: Callable[[int], bool] | None = None,
           prefill: Callable[[PrefixCache], torch.Tensor] | None = None, media_key: Any = None) -> DecodeResult:
    """Generate up to ``max_new`` ids after ``prompt`` on ``pc`` (call under the backend's lock).

    ``valid_vocab``: ids at or past it (padding of the lm_head past the tokenizer) are never sampled. ``mask``
    constrains each step (applied before sampling, fed each sampled id). ``on_token`` sees each generated id
    (stop ids excluded) and returns False to end generation there ("stop"); ``cancel`` ends it as "cancelled".
    ``prefill(pc)``: runs the whole prompt itself and returns the last logits (a multimodal prompt, whose media
    are ``media_key``), unless the cache continues the same media (then only the new tokens run).
    """
    out = DecodeResult(prompt_tokens=len(prompt))
    started = time.perf_counter()
    out.reused_tokens = pc.prepare(prompt, len(prompt) + max(max_new, 1), reuse, media_key)
    if out.reused_tokens:
        prefill = None
    step = pc if prefill is None else _PrefillWith(pc, prefill)
    tokens = decode_tokens(step, prompt, prompt[out.reused_tokens:], max_new, sampling, stop_ids, out,
                           valid_vocab=valid_vocab, mask=mask, generator=generator, cancel=cancel,
                           started=started)
    return run_decode(tokens, out, on_token)


class _PrefillWith:
    """A prefix cache whose prompt is prefilled by a function of its own (a multimodal prompt's embeddings)."""

    def __init__(self, pc: PrefixCache, prefill: Callable[[PrefixCache], torch.Tensor]) -> None:
        self.pc, self._prefill = pc, prefill

    def prefill(self, ids: Sequence[int]) -> torch.Tensor:
        return self._prefill(self.pc)

    def step(self, token_id: int) -> torch.Tensor:
        return self.pc.step(token_id)


def seeded_generator(device: torch.device, seed: int | None) -> torch.Generator | None:
    """A torch generator for ``seed`` on ``device`` (None leaves sampling to the global RNG)."""
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)

