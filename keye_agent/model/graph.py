"""A one-token decode step replayed as a CUDA graph (eager on other devices), bound to one model and one cache.

Eager decode is bound by Python and kernel-launch overhead (hundreds of small kernels per token); a captured graph
launches them all at once. The step runs ``KeyeForCausalLM.decode_static`` (fixed shapes, position in a device
tensor); the prefill still runs through the regular forward.

    step = DecodeGraph(model, cache)         # after (or before) the prefill; captures on CUDA
    logits = step(token_ids)                 # [B, 1] -> [B, 1, V] float32; advances the cache by one

The graph holds the cache's tensors and the model's mode (dense or DSA) at capture: build a new DecodeGraph for
another cache or after ``set_sparse``. The returned logits live in a buffer overwritten by the next step.

Two steps can be captured: the fused step (``fused_decode.FusedDecode``: Triton kernels, about ten per layer,
attention over the filled part of the cache only; the default on CUDA when triton imports) and the older
fixed-shape step of plain PyTorch ops (``KeyeForCausalLM.decode_static``: attention over the whole cache under a
mask, the reference indexer; its MoE must run a path without host syncs, "auto" on CUDA bfloat16 picks the
grouped GEMM). ``fused=`` picks one per graph; ``set_default_step`` sets the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from keye_agent.model import fused_decode
from keye_agent.model.cache import StaticCache
from keye_agent.model.model import KeyeForCausalLM

__all__ = ["DecodeGraph", "STEPS", "set_default_step"]

def capture(step: Callable[[], torch.Tensor], warmup: int,
            pool: Any = None) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Run ``step`` ``warmup`` times on a side stream, then capture one call of it (into memory pool ``pool``, by
    default the graph's own): the graph, and the step's output, which each replay overwrites."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = step()
    return graph, out


STEPS = ("auto", "fused", "static")
_default_step = "auto"


def set_default_step(name: str) -> None:
    """The step a DecodeGraph built with ``fused=None`` captures: "fused", "static", or "auto" (fused on CUDA when
    the kernels import, static otherwise)."""
    global _default_step
    if name not in STEPS:
        raise ValueError(f"set_default_step: name must be one of {list(STEPS)}, got {name!r}")
    _default_step = name


def _want_fused(device: torch.device) -> bool:
    if _default_step == "static":
        return False
    if _default_step == "fused":
        return True
    return device.type == "cuda" and fused_decode.available()


class DecodeGraph:
    """Captured decode step for ``model`` and ``cache``; ``use_graph=None`` captures on CUDA only."""

    def __init__(self, model: KeyeForCausalLM, cache: StaticCache, use_graph: bool | None = None,
                 warmup: int = 2, fused: bool | None = None) -> None:
        device = model.model.embed_tokens.weight.device
        if cache.k.device != device:
            raise ValueError(f"DecodeGraph: cache on {cache.k.device} but model on {device}")
        self.model, self.cache, self.sparse = model, cache, model.sparse
        self.use_graph = device.type == "cuda" if use_graph is None else use_graph
        if self.use_graph and device.type != "cuda":
            raise ValueError("DecodeGraph: use_graph=True needs a CUDA model")
        self.tokens = torch.zeros(cache.batch_size, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.logits: torch.Tensor | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.fused = None
        want = _want_fused(device) if fused is None else fused
        if want or (device.type == "cuda" and fused_decode.available()):
            # The fused step stacks the q/k/v weights into one buffer (new storage). Do it before any capture, so
            # that a graph of either step never holds the pointers of the weights it replaced.
            for layer in model.model.layers:
                fused_decode.fuse_qkv_weights(layer.self_attn)
        if want:
            self.fused = fused_decode.FusedDecode(model, cache)
        if self.use_graph:
            self._capture(warmup)

    @torch.inference_mode()
    def _capture(self, warmup: int) -> None:
        # Warm-up and capture write K/V at slot cache.length (or slot 0 of a full cache): a slot past the tokens
        # held, which the next real step overwrites, so the cache's contents are unaffected.
        self.pos.fill_(min(self.cache.length, self.cache.max_seq_len - 1))
        self.graph, self.logits = capture(self._step, warmup)

    def _step(self) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(self.tokens, self.pos)
        return self.model.decode_static(self.tokens, self.pos, self.cache)

    @torch.inference_mode()
    def __call__(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Append token_ids [B, 1] at position cache.length; return logits [B, 1, V] (float32)."""
        if tuple(token_ids.shape) != tuple(self.tokens.shape):
            raise ValueError(f"DecodeGraph: token_ids must be {tuple(self.tokens.shape)}, got {tuple(token_ids.shape)}")
        if self.model.sparse != self.sparse:
            raise ValueError("DecodeGraph: the model's sparse mode changed since capture; build a new DecodeGraph")
        start = self.cache.reserve(1, self.sparse)  # checks room and complete index keys
        self.tokens.copy_(token_ids)
        self.pos.fill_(start)
        if self.graph is not None:
            self.graph.replay()
            assert self.logits is not None
            out = self.logits
        else:
            out = self._step()
        self.cache.advance(1, self.sparse)
        return out
