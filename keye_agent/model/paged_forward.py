"""The batched forward over a paged cache (``model.paged.PagePool``): sequences of different lengths in one pass.

Two entry points, both computing what ``KeyeForCausalLM.forward`` computes for each sequence on its own:

- :func:`forward_packed` runs a mixed step: each sequence brings ``n`` new tokens after its ``start`` cached ones
  (a prefill chunk, or one decode token), all packed into one [1, N] row, so the projections and the MoE run once
  over every new token of the batch. K, V (and the DSA index keys) of the new tokens go to their slots; attention
  runs per sequence over its own slots (``ops.dense_attention`` / ``ops.indexer_topk`` + ``ops.sparse_attention``,
  the very functions of the sequential path), or, for the decode rows with ``batched_decode``, as one padded batch.
- :func:`decode_rows` is the fixed-shape decode step of B sequences (one token each): its inputs are device tensors
  of fixed shape (tokens [B], pages [B, max_pages], pos [B]), it has no host sync, so ``model.batch_graph`` can
  capture it as a CUDA graph per batch-size bucket. Each row attends its keys 0..pos[b] (DSA: its top-k of them)
  in place through its slot table with the Triton paged decode kernel (``paged_kernel``: CUDA), or, as the
  reference, gathered from its pages into a padded block under a mask ``s <= pos[b]`` (``static_decode``).

Positions are text positions (equal t/h/w streams): the engine serves text prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from keye_agent.model import ops, static_decode
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.paged import PagePool
from keye_agent.model.rope import rope_cos_sin

__all__ = ["Segment", "decode_rows", "forward_packed", "page_slots", "paged_kernel"]


@dataclass
class Segment:
    """One sequence's share of a step: ``n`` new tokens at positions ``start..start+n-1``; ``slots`` [start + n]
    int64 holds the flat pool slot of each of its positions 0..start+n-1."""

    start: int
    n: int
    slots: torch.Tensor


def page_slots(pages: torch.Tensor, page_size: int) -> torch.Tensor:
    """Slots [..., n_pages * page_size] of block tables ``pages`` [..., n_pages] (int64)."""
    offs = torch.arange(page_size, device=pages.device, dtype=pages.dtype)
    return (pages[..., None] * page_size + offs).flatten(-2)


def _rope(model: KeyeForCausalLM, positions: torch.Tensor, sparse: bool) -> tuple[torch.Tensor, ...]:
    """(cos, sin[, index cos, index sin]) for text positions [B, T]."""
    cfg = model.config
    pos3 = positions.expand(3, *positions.shape)
    rope: tuple[torch.Tensor, ...] = rope_cos_sin(pos3, cfg.head_dim, cfg.rope_theta, cfg.mrope_section)
    if sparse:
        sa = cfg.sa_config
        assert sa is not None
        rope += rope_cos_sin(pos3, sa.indexer_head_dim, cfg.rope_theta,
                             sa.index_mrope_section(cfg.head_dim, cfg.mrope_section))
    return rope


_kernel: list = []  # [paged_decode_attention or None], filled on first use


def paged_kernel(device: torch.device):
    """The Triton paged decode attention (``kernels/decode/paged.py``) where the ops backend takes kernels on this
    device ("auto": CUDA; "triton": anywhere) and triton imports, else None (the gather + SDPA reference)."""
    backend = ops.get_backend()
    if backend == "reference" or (backend == "auto" and device.type != "cuda"):
        return None
    if not _kernel:
        try:
            from keye_agent.model.kernels.decode.paged import paged_decode_attention
        except ImportError:
            paged_decode_attention = None
        _kernel.append(paged_decode_attention)
    return _kernel[0]


def _decode_attention(attn: torch.nn.Module, q: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor] | None,
                      views: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None], table: torch.Tensor,
                      pos: torch.Tensor) -> torch.Tensor:
    """q [B,1,Hq,D] of rows whose keys sit at slots ``table`` [B, S] (0..pos[b] valid) -> [B,1,Hq,D]."""
    kf, vf, ikf = views
    kernel = paged_kernel(q.device)
    lengths = pos + 1
    if index is not None and attn.topk < table.shape[1]:
        # DSA past top-k: only the selected keys (top-k per row, not the whole padded table) are read.
        assert ikf is not None
        idx, keep = static_decode.decode_select(index[0], index[1], ikf[table], pos, attn.topk)
        table = table.gather(1, idx[:, 0])  # [B, K] slots, the first min(pos + 1, K) selected
        if kernel is None:
            return ops._attend(q, kf[table], vf[table], keep[:, None].expand(q.shape[0], 1, -1), attn.scale)
        lengths = lengths.clamp(max=table.shape[1])
    # dense, or DSA whose top-k holds every visible key (the same attention)
    if kernel is None:
        return static_decode.decode_dense(q, kf[table], vf[table], pos, attn.scale)
    out = torch.empty_like(q[:, 0])
    kernel(q[:, 0], kf, vf, table, lengths, attn.scale, out)
    return out[:, None]


def forward_packed(model: KeyeForCausalLM, pool: PagePool, tokens: torch.Tensor, segments: Sequence[Segment],
                   sparse: bool, batched_decode: bool = False) -> torch.Tensor:
    """Logits [len(segments), V] float32 of each segment's last new token. ``tokens`` [N] int64 are the segments'
    new tokens in order (N = sum of n). ``sparse``: DSA (the pages must hold index keys for every cached token)."""
    sparse = sparse and model.config.sa_config is not None
    dev = tokens.device
    N = tokens.shape[0]
    if N != sum(s.n for s in segments) or any(s.n < 1 or s.slots.shape[0] != s.start + s.n for s in segments):
        raise ValueError(f"forward_packed: {N} tokens for segments {[(s.start, s.n, s.slots.shape[0]) for s in segments]}")
    positions = torch.cat([torch.arange(s.start, s.start + s.n, device=dev) for s in segments])[None]  # [1, N]
    new_slots = torch.cat([s.slots[s.start:] for s in segments])  # [N]
    ends = torch.tensor([s.n for s in segments], device=dev).cumsum(0)
    offsets = [0, *ends.tolist()]
    dec = [j for j, s in enumerate(segments) if batched_decode and s.n == 1]
    looped = [j for j in range(len(segments)) if j not in set(dec)]
    if dec:
        width = max(segments[j].slots.shape[0] for j in dec)
        table = torch.full((len(dec), width), pool.scratch * pool.page_size, dtype=torch.long, device=dev)
        for r, j in enumerate(dec):
            table[r, : segments[j].slots.shape[0]] = segments[j].slots
        dec_rows = torch.tensor([offsets[j] for j in dec], device=dev)
        dec_pos = torch.tensor([segments[j].start for j in dec], device=dev)
    rope = _rope(model, positions, sparse)
    x = model.model.embed_tokens(tokens[None])  # [1, N, hidden]
    for i, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q, k, v = attn.project(h, rope)
        kf, vf, ikf = views = pool.layer(i)
        kf[new_slots] = k[0].to(kf.dtype)
        vf[new_slots] = v[0].to(vf.dtype)
        if sparse:
            assert attn.sa_indexer is not None and ikf is not None
            iq, iw, ik = attn.sa_indexer(h, rope[2], rope[3])
            ikf[new_slots] = ik[0].to(ikf.dtype)
        out = torch.empty_like(q)
        for j in looped:
            s, a, b = segments[j], offsets[j], offsets[j + 1]
            ks, vs = kf[s.slots][None], vf[s.slots][None]
            if sparse:
                idx = ops.indexer_topk(iq[:, a:b], iw[:, a:b], ikf[s.slots][None], s.start, attn.topk)
                out[:, a:b] = ops.sparse_attention(q[:, a:b], ks, vs, idx, attn.scale)
            else:
                out[:, a:b] = ops.dense_attention(q[:, a:b], ks, vs, s.start, attn.scale)
        if dec:
            index = (iq[0, dec_rows][:, None], iw[0, dec_rows][:, None]) if sparse else None
            out[0, dec_rows] = _decode_attention(attn, q[0, dec_rows][:, None], index, views, table, dec_pos)[:, 0]
        x = x + attn.o_proj(out.reshape(1, N, -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    last = ends - 1
    return model.lm_head(model.model.norm(x[0, last])).float()


def decode_rows(model: KeyeForCausalLM, pool: PagePool, tokens: torch.Tensor, pages: torch.Tensor,
                pos: torch.Tensor, sparse: bool) -> torch.Tensor:
    """One decode token per row: tokens [B] int64 at position pos[b] of the sequence whose block table is
    pages[b] ([B, max_pages] int64; unused entries any page, e.g. ``pool.scratch``). Logits [B, V] float32.

    Fixed shapes and no host sync (capturable). A padding row points every page at ``pool.scratch`` with pos 0.
    """
    sparse = sparse and model.config.sa_config is not None
    table = page_slots(pages, pool.page_size)  # [B, S]
    new_slots = table.gather(1, pos[:, None])[:, 0]  # [B]
    rope = _rope(model, pos[:, None], sparse)
    x = model.model.embed_tokens(tokens[:, None])  # [B, 1, hidden]
    for i, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q, k, v = attn.project(h, rope)
        kf, vf, ikf = views = pool.layer(i)
        kf.index_copy_(0, new_slots, k[:, 0].to(kf.dtype))
        vf.index_copy_(0, new_slots, v[:, 0].to(vf.dtype))
        index = None
        if sparse:
            assert attn.sa_indexer is not None and ikf is not None
            iq, iw, ik = attn.sa_indexer(h, rope[2], rope[3])
            ikf.index_copy_(0, new_slots, ik[:, 0].to(ikf.dtype))
            index = (iq, iw)
        out = _decode_attention(attn, q, index, views, table, pos)
        x = x + attn.o_proj(out.reshape(x.shape[0], 1, -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.lm_head(model.model.norm(x[:, 0])).float()
