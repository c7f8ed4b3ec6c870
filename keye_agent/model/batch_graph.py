"""The batched decode step (``paged_forward.decode_rows``) captured as a CUDA graph, one per bucket of batch size and
block-table width; eager (the same fixed-shape step) on other devices.

    g = BatchDecodeGraph(model, pool, batch=8, max_pages=64, sparse=True)
    logits = g(tokens, pages, pos)     # n <= 8 rows: ids, each row's block table (CPU int64), its position

Rows past n are padding: their block table is the pool's scratch page and their position 0, so they write only
there. The graph holds the model's weights, the pool's tensors and its input buffers; the logits it returns live
in a buffer that the next call overwrites. :func:`bucket` rounds a size up to the bucket that serves it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from keye_agent.model import moe
from keye_agent.model.graph import capture
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.paged import PagePool
from keye_agent.model.paged_forward import decode_rows

__all__ = ["BatchDecodeGraph", "bucket"]


def bucket(n: int, smallest: int = 1) -> int:
    """The power of two >= max(n, smallest)."""
    b = max(1, smallest)
    while b < n:
        b *= 2
    return b


def _moe_sync_free(model: KeyeForCausalLM, batch: int) -> bool:
    """Whether the MoE of a ``batch``-row step takes a path without host syncs (capturable): the grouped GEMM
    (CUDA bfloat16 on Hopper) or the gather path (few rows); the per-expert loop syncs once per layer."""
    w = model.model.layers[0].mlp.experts.gate_up_proj
    rows = batch * model.config.num_experts_per_tok
    impl = moe.get_moe_impl()
    if impl == "grouped":
        return True
    if impl == "loop":
        return False
    return rows <= moe.GATHER_MAX_ROWS or (impl == "auto" and moe._grouped_ok(w[0, :1], w))


class BatchDecodeGraph:
    """Captured decode step for up to ``batch`` rows whose block tables fit ``max_pages`` pages (module docstring);
    ``use_graph=None`` captures on CUDA when the step's MoE path has no host sync (else it runs eagerly). ``mempool``: a ``torch.cuda.graph_pool_handle()`` that the graphs of
    one engine share (they replay one at a time, on one stream)."""

    def __init__(self, model: KeyeForCausalLM, pool: PagePool, batch: int, max_pages: int, sparse: bool,
                 use_graph: bool | None = None, warmup: int = 2, mempool: object = None) -> None:
        dev = model.model.embed_tokens.weight.device
        if pool.k.device != dev:
            raise ValueError(f"BatchDecodeGraph: pool on {pool.k.device} but model on {dev}")
        self.model, self.pool, self.batch, self.max_pages, self.sparse = model, pool, batch, max_pages, sparse
        self.use_graph = dev.type == "cuda" and _moe_sync_free(model, batch) if use_graph is None else use_graph
        if self.use_graph and dev.type != "cuda":
            raise ValueError("BatchDecodeGraph: use_graph=True needs a CUDA model")
        self.tokens = torch.zeros(batch, dtype=torch.long, device=dev)
        self.pages = torch.full((batch, max_pages), pool.scratch, dtype=torch.long, device=dev)
        self.pos = torch.zeros(batch, dtype=torch.long, device=dev)
        pin = dev.type == "cuda"
        # host staging buffers (pinned on CUDA), contiguous so each goes over in one asynchronous copy
        self._h_tokens = torch.zeros(batch, dtype=torch.long, pin_memory=pin)
        self._h_pos = torch.zeros(batch, dtype=torch.long, pin_memory=pin)
        self._h_pages = torch.full((batch, max_pages), pool.scratch, dtype=torch.long, pin_memory=pin)
        self.logits: torch.Tensor | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self._mempool = mempool
        if self.use_graph:
            self._capture(warmup)

    def _step(self) -> torch.Tensor:
        return decode_rows(self.model, self.pool, self.tokens, self.pages, self.pos, self.sparse)

    @torch.inference_mode()
    def _capture(self, warmup: int) -> None:
        # Warm-up and capture run the padding rows only: they write the scratch page, nothing a sequence holds.
        self.graph, self.logits = capture(self._step, warmup, self._mempool)

    @torch.inference_mode()
    def __call__(self, tokens: Sequence[int], pages: Sequence[torch.Tensor], pos: Sequence[int]) -> torch.Tensor:
        """Logits [n, V] float32 of n rows: token ids, block tables (CPU int64 tensors), positions."""
        n = len(tokens)
        if not 1 <= n <= self.batch or len(pages) != n or len(pos) != n:
            raise ValueError(f"BatchDecodeGraph: {n} tokens, {len(pages)} block tables and {len(pos)} positions "
                             f"for a graph of {self.batch} rows")
        if self.model.sparse != self.sparse and self.model.config.sa_config is not None:
            raise ValueError("BatchDecodeGraph: the model's sparse mode changed since capture")
        self._h_tokens.zero_()
        self._h_tokens[:n] = torch.tensor(list(tokens), dtype=torch.long)
        self._h_pos.zero_()
        self._h_pos[:n] = torch.tensor(list(pos), dtype=torch.long)
        self._h_pages.fill_(self.pool.scratch)
        for r, p in enumerate(pages):
            if p.shape[0] > self.max_pages:
                raise ValueError(f"BatchDecodeGraph: a block table of {p.shape[0]} pages exceeds {self.max_pages}")
            self._h_pages[r, : p.shape[0]] = p
        self.tokens.copy_(self._h_tokens, non_blocking=True)
        self.pos.copy_(self._h_pos, non_blocking=True)
        self.pages.copy_(self._h_pages, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            assert self.logits is not None
            out = self.logits
        else:
            out = self._step()
        return out[:n]
