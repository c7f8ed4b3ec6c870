"""Public Triton sparse attention: checks the inputs, then picks the decode, block-union or per-query path."""

from __future__ import annotations

import torch
import triton

from keye_agent.model.kernels._checks import check_dims, check_idx
from keye_agent.model.kernels.sparse_attention.block_union import block_queries, build_union, launch_block_union
from keye_agent.model.kernels.sparse_attention.per_query import launch_per_query

__all__ = ["sparse_attention", "UNION_RATIO", "DECODE_ROWS"]

UNION_RATIO = 4
"""Use the block-union kernel when a block's union averages at most this many times K keys."""
DECODE_ROWS = 64
"""At most this many queries (B x T) take the split decode path and never build unions."""
DECODE_BLOCK_N = 32
"""Keys per split on the decode path: 2048 keys x 4 KV heads become 256 programs, enough loads in flight."""
CHUNK_BITMAP_BYTES = 256 << 20
"""Upper bound of the per-chunk union bitmap."""


def check_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor) -> None:
    """Raise ValueError quoting the shapes unless q [B,T,Hq,D], k/v [B,S,Hkv,D], idx [B,T,K] int32 agree."""
    check_dims("q", q, 4, "[B, T, Hq, D]")
    check_dims("k", k, 4, "[B, S, Hkv, D]")
    check_dims("v", v, 4, "[B, S, Hkv, D]")
    B, T, Hq, D = q.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"k and v must both be [B={B}, S, Hkv, D={D}], got {tuple(k.shape)} and {tuple(v.shape)}")
    if Hq % k.shape[2]:
        raise ValueError(f"query heads {Hq} must be a multiple of KV heads {k.shape[2]}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    check_idx(idx, B, T)


def sparse_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, scale: float, path: str = "auto"
) -> torch.Tensor:
    """Triton sparse GQA attention: q [B,T,Hq,D], k/v [B,S,Hkv,D] (strided views allowed), idx [B,T,K] int32.

    Returns [B, T, Hq, D] in q's dtype. ``path`` forces "per_query" or "union" (benchmarks); "auto" takes the
    split per-query kernel for decode-sized calls; otherwise, chunk by chunk, it measures the unions of the chunk's
    last four blocks and takes the block-union kernel when they average at most UNION_RATIO x K keys, else the
    per-query gather (one host sync per chunk).
    """
    check_attention_inputs(q, k, v, idx)
    if path not in ("auto", "per_query", "union"):
        raise ValueError(f"path must be 'auto', 'per_query' or 'union', got {path!r}")
    B, T, Hq, D = q.shape
    S, K = k.shape[1], idx.shape[2]
    out = torch.empty_like(q)
    if B * T == 0:
        return out
    if K == 0:
        return out.zero_()
    if path == "per_query" or (path == "auto" and B * T <= DECODE_ROWS):
        # spread few queries over about 256 programs
        nsplit = max(1, 256 // (B * T * k.shape[2])) if B * T <= DECODE_ROWS else 1
        launch_per_query(q, k, v, idx, scale, out, nsplit=nsplit, block_n=DECODE_BLOCK_N if nsplit > 1 else 0)
        return out
    bq = block_queries(Hq // k.shape[2])
    chunk = max(1, CHUNK_BITMAP_BYTES // max(1, 4 * B * S)) * bq  # bitmap rows are blocks of bq queries
    bitmap = torch.empty(B * triton.cdiv(min(chunk, T), bq) * S, dtype=torch.int32, device=q.device)
    for q0 in range(0, T, chunk):
        rows = min(chunk, T - q0)
        use_union = path == "union"
        if path == "auto":
            # probe the unions of the chunk's last 4 blocks (the widest ranges); one host sync per chunk
            n_probe = min(rows, 4 * bq)
            probe = build_union(idx, q0 + rows - n_probe, n_probe, S, bq, bitmap)[2]
            use_union = int(probe.sum()) <= UNION_RATIO * K * probe.numel()
        if use_union:
            launch_block_union(q, k, v, build_union(idx, q0, rows, S, bq, bitmap), q0, bq, scale, out)
        else:
            launch_per_query(q[:, q0:q0 + rows], k, v, idx[:, q0:q0 + rows], scale, out[:, q0:q0 + rows])
    return out
