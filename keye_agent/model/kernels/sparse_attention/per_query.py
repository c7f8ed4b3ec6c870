"""Triton sparse GQA attention, one query per program: the gather path (any index pattern) and decode.

Program (query, KV head, split) holds the G query heads of that KV head as the rows of its tiles, gathers its
query's selected keys and values in tiles of BLOCK_N straight from the (possibly strided) cache, and keeps an
online softmax. With NSPLIT > 1 (decode: few queries, 2048 keys) each split writes a partial (max, sum, weighted
values) and a second kernel combines them, so one query spreads over NSPLIT x Hkv programs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from keye_agent.model.kernels._checks import dot_precision, pow2

__all__ = ["launch_per_query", "PER_QUERY_CONFIG"]

PER_QUERY_CONFIG = {"block_n": 128, "num_warps": 4, "num_stages": 2}
"""Launch settings (the best of benchmarks/dsa.py --sweep on the H200 at 128K, random pattern: 68 ms vs 77 ms
for block_n 64)."""

LOG2E = 1.4426950408889634


@triton.jit
def _per_query_kernel(
    q_ptr, k_ptr, v_ptr, idx_ptr, o_ptr, part_ptr, ml_ptr,
    T, K, G, D, chunk, scale_log2,
    sq_b, sq_t, sq_h, sk_b, sk_s, sk_h, sv_b, sv_s, sv_h, si_b, si_t, so_b, so_t, so_h,
    GP: tl.constexpr, DP: tl.constexpr, BLOCK_N: tl.constexpr, NSPLIT: tl.constexpr, PRECISION: tl.constexpr,
):
    bt = tl.program_id(0)
    h = tl.program_id(1)
    split = tl.program_id(2)
    b = (bt // T).to(tl.int64)
    t = (bt % T).to(tl.int64)
    g = tl.arange(0, GP)
    dd = tl.arange(0, DP)
    row_ok = g < G
    d_ok = dd < D
    heads = h * G + g
    q = tl.load(q_ptr + b * sq_b + t * sq_t + heads[:, None] * sq_h + dd[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)  # [GP, DP]
    m_i = tl.full((GP,), float("-inf"), tl.float32)
    l_i = tl.zeros((GP,), tl.float32)
    acc = tl.zeros((GP, DP), tl.float32)
    k_base = k_ptr + b * sk_b + h * sk_h
    v_base = v_ptr + b * sv_b + h * sv_h
    i_base = idx_ptr + b * si_b + t * si_t
    lo = split * chunk
    hi = tl.minimum(lo + chunk, K)
    for j0 in range(lo, hi, BLOCK_N):
        j = j0 + tl.arange(0, BLOCK_N)
        sel = tl.load(i_base + j, mask=j < hi, other=-1)  # [BN]
        ok = sel >= 0
        rows = tl.where(ok, sel, 0).to(tl.int64)
        kk = tl.load(k_base + rows[:, None] * sk_s + dd[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
        s = tl.dot(q, tl.trans(kk), input_precision=PRECISION) * scale_log2  # [GP, BN], log2 units
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_use[:, None])
        alpha = tl.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        vv = tl.load(v_base + rows[:, None] * sv_s + dd[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(vv.dtype), vv, input_precision=PRECISION)
        m_i = m_new
    if NSPLIT == 1:
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        tl.store(o_ptr + b * so_b + t * so_t + heads[:, None] * so_h + dd[None, :],
                 out.to(o_ptr.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    else:
        # partials laid out [B*T, Hq, NSPLIT, DP] and [B*T, Hq, NSPLIT, 2]
        slot = (bt.to(tl.int64) * (tl.num_programs(1) * G) + heads) * NSPLIT + split  # [GP]
        tl.store(part_ptr + slot[:, None] * DP + dd[None, :], acc, mask=row_ok[:, None])
        tl.store(ml_ptr + slot * 2, m_i, mask=row_ok)
        tl.store(ml_ptr + slot * 2 + 1, l_i, mask=row_ok)


@triton.jit
def _combine_kernel(
    part_ptr, ml_ptr, o_ptr, T, Hq, D, so_b, so_t, so_h,
    DP: tl.constexpr, NSPLIT: tl.constexpr,
):
    bt = tl.program_id(0)
    hq = tl.program_id(1)
    b = (bt // T).to(tl.int64)
    t = (bt % T).to(tl.int64)
    sp = tl.arange(0, NSPLIT)
    dd = tl.arange(0, DP)
    slot = (bt.to(tl.int64) * Hq + hq) * NSPLIT + sp  # [NSPLIT]
    m = tl.load(ml_ptr + slot * 2)
    lsum = tl.load(ml_ptr + slot * 2 + 1)
    m_all = tl.max(m, 0)
    m_use = tl.where(m_all == float("-inf"), 0.0, m_all)
    wgt = tl.exp2(m - m_use)  # an empty split has m = -inf and weight 0
    denom = tl.sum(lsum * wgt, 0)
    part = tl.load(part_ptr + slot[:, None] * DP + dd[None, :])  # [NSPLIT, DP]
    out = tl.sum(part * wgt[:, None], 0) / tl.where(denom > 0, denom, 1.0)
    tl.store(o_ptr + b * so_b + t * so_t + hq * so_h + dd, out.to(o_ptr.dtype.element_ty), mask=dd < D)


def launch_per_query(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, scale: float, out: torch.Tensor,
    nsplit: int = 1, block_n: int = 0,
) -> None:
    """Sparse attention of every query over its own index set; nsplit > 1 splits the set (decode)."""
    B, T, Hq, D = q.shape
    Hkv = k.shape[2]
    G = Hq // Hkv
    K = idx.shape[2]
    GP, DP = pow2(G, 16), pow2(D, 16)
    block_n = block_n or (PER_QUERY_CONFIG["block_n"] if DP <= 128 else 32)
    nsplit = pow2(max(1, min(nsplit, triton.cdiv(K, block_n))))
    chunk = triton.cdiv(triton.cdiv(K, nsplit), block_n) * block_n
    if nsplit > 1:
        part = torch.empty(B * T * Hq * nsplit * DP, dtype=torch.float32, device=q.device)
        ml = torch.empty(B * T * Hq * nsplit * 2, dtype=torch.float32, device=q.device)
    else:
        part = ml = out  # unused
    _per_query_kernel[(B * T, Hkv, nsplit)](
        q, k, v, idx, out, part, ml,
        T, K, G, D, chunk, scale * LOG2E,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), idx.stride(0), idx.stride(1),
        out.stride(0), out.stride(1), out.stride(2),
        GP=GP, DP=DP, BLOCK_N=block_n, NSPLIT=nsplit, PRECISION=dot_precision(q.dtype),
        num_warps=PER_QUERY_CONFIG["num_warps"], num_stages=PER_QUERY_CONFIG["num_stages"],
    )
    if nsplit > 1:
        _combine_kernel[(B * T, Hq)](
            part, ml, out, T, Hq, D, out.stride(0), out.stride(1), out.stride(2),
            DP=DP, NSPLIT=nsplit, num_warps=1,
        )
