"""Dense GQA decode attention over the filled part of the cache only, the position read from device memory.

Grid (B, Hkv, NSPLIT) is fixed (a CUDA graph replays it), but each program reads ``pos`` and covers its share of
keys ``0..pos``: slot ``split`` takes ``ceil(ceil((pos + 1) / NSPLIT) / BLOCK_N)`` tiles, so the bytes read grow
with the filled length, not with the allocated cache. Each split writes a partial (max, sum, weighted values) that
``per_query._combine_kernel`` merges, the same split-softmax as the sparse decode path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from keye_agent.model.kernels._checks import dot_precision, pow2
from keye_agent.model.kernels.sparse_attention.per_query import LOG2E, _combine_kernel

__all__ = ["decode_attention", "DECODE_ATTN_CONFIG"]

DECODE_ATTN_CONFIG = {"nsplit": 64, "block_n": 64, "num_warps": 4, "num_stages": 2}
"""Launch settings: NSPLIT programs per (row, KV head) and BLOCK_N keys per tile."""


@triton.jit
def _decode_attn_kernel(
    q_ptr, k_ptr, v_ptr, pos_ptr, part_ptr, ml_ptr, Hq, G, D, scale_log2,
    sq_b, sq_h, sk_b, sk_s, sk_h, sv_b, sv_s, sv_h,
    GP: tl.constexpr, DP: tl.constexpr, BLOCK_N: tl.constexpr, NSPLIT: tl.constexpr, PRECISION: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    split = tl.program_id(2)
    n = tl.load(pos_ptr).to(tl.int32) + 1
    chunk = tl.cdiv(tl.cdiv(n, NSPLIT), BLOCK_N) * BLOCK_N
    lo = split * chunk
    hi = tl.minimum(lo + chunk, n)
    g = tl.arange(0, GP)
    dd = tl.arange(0, DP)
    row_ok = g < G
    d_ok = dd < D
    heads = h * G + g
    q = tl.load(q_ptr + b * sq_b + heads[:, None] * sq_h + dd[None, :], mask=row_ok[:, None] & d_ok[None, :],
                other=0.0)
    m_i = tl.full((GP,), float("-inf"), tl.float32)
    l_i = tl.zeros((GP,), tl.float32)
    acc = tl.zeros((GP, DP), tl.float32)
    k_base = k_ptr + b * sk_b + h * sk_h
    v_base = v_ptr + b * sv_b + h * sv_h
    for j0 in range(lo, hi, BLOCK_N):
        j = j0 + tl.arange(0, BLOCK_N)
        ok = j < hi
        rows = j.to(tl.int64)
        kk = tl.load(k_base + rows[:, None] * sk_s + dd[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
        s = tl.dot(q, tl.trans(kk), input_precision=PRECISION) * scale_log2
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_use[:, None])
        alpha = tl.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        vv = tl.load(v_base + rows[:, None] * sv_s + dd[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(vv.dtype), vv, input_precision=PRECISION)
        m_i = m_new
    slot = (b * Hq + heads) * NSPLIT + split
    tl.store(part_ptr + slot[:, None] * DP + dd[None, :], acc, mask=row_ok[:, None])
    tl.store(ml_ptr + slot * 2, m_i, mask=row_ok)
    tl.store(ml_ptr + slot * 2 + 1, l_i, mask=row_ok)


def decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, scale: float, out: torch.Tensor,
    nsplit: int = 0, block_n: int = 0,
) -> None:
    """out [B, Hq, D] <- softmax(q k[:, :pos+1]^T * scale) v[:, :pos+1] for q [B, Hq, D] and caches k/v
    [B, S_max, Hkv, D] (strided views allowed); pos [1] int64 on the device."""
    B, Hq, D = q.shape
    Hkv = k.shape[2]
    G = Hq // Hkv
    GP, DP = pow2(G, 16), pow2(D, 16)
    nsplit = pow2(nsplit or DECODE_ATTN_CONFIG["nsplit"])
    block_n = block_n or DECODE_ATTN_CONFIG["block_n"]
    part = torch.empty(B * Hq * nsplit * DP, dtype=torch.float32, device=q.device)
    ml = torch.empty(B * Hq * nsplit * 2, dtype=torch.float32, device=q.device)
    _decode_attn_kernel[(B, Hkv, nsplit)](
        q, k, v, pos, part, ml, Hq, G, D, scale * LOG2E,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        GP=GP, DP=DP, BLOCK_N=block_n, NSPLIT=nsplit, PRECISION=dot_precision(q.dtype),
        num_warps=DECODE_ATTN_CONFIG["num_warps"], num_stages=DECODE_ATTN_CONFIG["num_stages"],
    )
    _combine_kernel[(B, Hq)](part, ml, out, 1, Hq, D, out.stride(0), 0, out.stride(1), DP=DP, NSPLIT=nsplit,
                             num_warps=1)
