"""Dense GQA decode attention over a paged cache: each row's keys are read through its slot table, in place.

The batched decode step (``model.paged_forward``) otherwise gathers every row's keys into a padded block before
attending; here program (row b, KV head h, split) reads ``len[b]`` from device memory and loads keys and values
straight from the pool at slots ``table[b, 0..len[b]-1]``. The same kernel serves DSA: the table is then each row's
selected slots (top-k) and ``len`` their count. Split-softmax partials are merged by ``per_query._combine_kernel``,
as in ``attention.py``. Reference: ``naive.paged_decode_attention_ref``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from keye_agent.model.kernels._checks import dot_precision, pow2
from keye_agent.model.kernels.decode.attention import DECODE_ATTN_CONFIG
from keye_agent.model.kernels.sparse_attention.per_query import LOG2E, _combine_kernel

__all__ = ["paged_decode_attention"]


@triton.jit
def _paged_decode_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, len_ptr, part_ptr, ml_ptr, Hq, G, D, scale_log2,
    sq_b, sq_h, sk_s, sk_h, sv_s, sv_h, st_b,
    GP: tl.constexpr, DP: tl.constexpr, BLOCK_N: tl.constexpr, NSPLIT: tl.constexpr, PRECISION: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    split = tl.program_id(2)
    n = tl.load(len_ptr + b).to(tl.int32)
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
    for j0 in range(lo, hi, BLOCK_N):
        j = j0 + tl.arange(0, BLOCK_N)
        ok = j < hi
        slots = tl.load(table_ptr + b * st_b + j, mask=ok, other=0).to(tl.int64)
        kk = tl.load(k_ptr + h * sk_h + slots[:, None] * sk_s + dd[None, :], mask=ok[:, None] & d_ok[None, :],
                     other=0.0)
        s = tl.dot(q, tl.trans(kk), input_precision=PRECISION) * scale_log2
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_use[:, None])
        alpha = tl.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        vv = tl.load(v_ptr + h * sv_h + slots[:, None] * sv_s + dd[None, :], mask=ok[:, None] & d_ok[None, :],
                     other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(vv.dtype), vv, input_precision=PRECISION)
        m_i = m_new
    slot = (b * Hq + heads) * NSPLIT + split
    tl.store(part_ptr + slot[:, None] * DP + dd[None, :], acc, mask=row_ok[:, None])
    tl.store(ml_ptr + slot * 2, m_i, mask=row_ok)
    tl.store(ml_ptr + slot * 2 + 1, l_i, mask=row_ok)


def paged_decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor, lengths: torch.Tensor, scale: float,
    out: torch.Tensor, nsplit: int = 0, block_n: int = 0,
) -> None:
    """out [B, Hq, D] <- for each row b, softmax(q[b] K^T * scale) V over the keys at slots table[b, :lengths[b]]
    of the pool k/v [N_slots, Hkv, D]; table [B, S] int64, lengths [B] (each >= 1) on the device."""
    if q.dim() != 3 or k.dim() != 3 or k.shape != v.shape or table.dim() != 2 or lengths.dim() != 1:
        raise ValueError(f"paged_decode_attention: expected q [B,Hq,D], k and v [N,Hkv,D], table [B,S], lengths "
                         f"[B]; got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, table "
                         f"{tuple(table.shape)}, lengths {tuple(lengths.shape)}")
    B, Hq, D = q.shape
    Hkv = k.shape[1]
    if table.shape[0] != B or lengths.shape[0] != B or k.shape[2] != D or Hq % Hkv or table.dtype != torch.long:
        raise ValueError(f"paged_decode_attention: shapes disagree: q {tuple(q.shape)}, k {tuple(k.shape)}, table "
                         f"{tuple(table.shape)} {table.dtype}, lengths {tuple(lengths.shape)}")
    if q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1 or table.stride(-1) != 1:
        raise ValueError("paged_decode_attention: q, k, v and table need a unit stride in their last dim")
    G = Hq // Hkv
    GP, DP = pow2(G, 16), pow2(D, 16)
    nsplit = pow2(nsplit or DECODE_ATTN_CONFIG["nsplit"])
    block_n = block_n or DECODE_ATTN_CONFIG["block_n"]
    part = torch.empty(B * Hq * nsplit * DP, dtype=torch.float32, device=q.device)
    ml = torch.empty(B * Hq * nsplit * 2, dtype=torch.float32, device=q.device)
    _paged_decode_kernel[(B, Hkv, nsplit)](
        q, k, v, table, lengths, part, ml, Hq, G, D, scale * LOG2E,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), table.stride(0),
        GP=GP, DP=DP, BLOCK_N=block_n, NSPLIT=nsplit, PRECISION=dot_precision(q.dtype),
        num_warps=DECODE_ATTN_CONFIG["num_warps"], num_stages=DECODE_ATTN_CONFIG["num_stages"],
    )
    _combine_kernel[(B, Hq)](part, ml, out, 1, Hq, D, out.stride(0), 0, out.stride(1), DP=DP, NSPLIT=nsplit,
                             num_warps=1)
