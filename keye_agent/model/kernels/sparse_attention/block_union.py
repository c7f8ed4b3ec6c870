"""Triton sparse GQA attention for blocks of consecutive queries that share KV tiles (prefill).

A block of BQ consecutive queries (BQ x G query heads of one KV head = the 128 rows of a tile) walks the union of
its queries' index sets, in key order, with one bit per query saying who selected each key; a query masks out
the keys it did not select. When the block's sets overlap (a trained indexer, the block-shared pattern) each KV
tile is read once for BQ queries instead of BQ times. The union is built in two launches: every query sets its
bit in a per-block [W] bitmap by atomic OR, then one program per block compacts the non-zero entries.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from keye_agent.model.kernels._checks import dot_precision, pow2

__all__ = ["build_union", "launch_block_union", "block_queries", "UNION_CONFIG"]

UNION_CONFIG = {"block_n": 32, "num_warps": 4, "num_stages": 3}
"""Launch settings of the attention kernel (the best of benchmarks/dsa.py --sweep on the H200 at 128K: 17.9 ms vs
20.9 ms for block_n 64 with 8 warps)."""

LOG2E = 1.4426950408889634


@triton.jit
def _scatter_bits_kernel(
    idx_ptr, mask_ptr, q0, K, BQ, si_b, si_t, sm_b, sm_blk, BLOCK: tl.constexpr,
):
    r = tl.program_id(0)  # query row inside the chunk
    b = tl.program_id(1).to(tl.int64)
    blk = r // BQ
    bit = tl.full((BLOCK,), 1, tl.int32) << (r % BQ)
    i_row = idx_ptr + b * si_b + (q0 + r).to(tl.int64) * si_t
    m_row = mask_ptr + b * sm_b + blk.to(tl.int64) * sm_blk
    for j0 in range(0, K, BLOCK):
        j = j0 + tl.arange(0, BLOCK)
        sel = tl.load(i_row + j, mask=j < K, other=-1)
        tl.atomic_or(m_row + tl.where(sel >= 0, sel, 0), bit, mask=sel >= 0, sem="relaxed")


@triton.jit
def _compact_kernel(
    mask_ptr, uidx_ptr, ubits_ptr, count_ptr, width, sm_b, sm_blk, su_b, su_blk, n_blk,
    BLOCK: tl.constexpr,
):
    blk = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    m_row = mask_ptr + b * sm_b + blk.to(tl.int64) * sm_blk
    u_off = b * su_b + blk.to(tl.int64) * su_blk
    written = 0
    for s0 in range(0, width, BLOCK):
        s = s0 + tl.arange(0, BLOCK)
        bits = tl.load(m_row + s, mask=s < width, other=0)
        nz = bits != 0
        pos = written + tl.cumsum(nz.to(tl.int32), 0) - 1
        tl.store(uidx_ptr + u_off + pos, s, mask=nz)
        tl.store(ubits_ptr + u_off + pos, bits, mask=nz)
        written += tl.sum(nz.to(tl.int32))
    tl.store(count_ptr + b * n_blk + blk, written)


@triton.jit
def _block_union_kernel(
    q_ptr, k_ptr, v_ptr, uidx_ptr, ubits_ptr, count_ptr, o_ptr,
    q0, T, G, D, n_blk, scale_log2,
    sq_b, sq_t, sq_h, sk_b, sk_s, sk_h, sv_b, sv_s, sv_h, su_b, su_blk, so_b, so_t, so_h,
    BQ: tl.constexpr, GP: tl.constexpr, DP: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):
    blk = tl.program_id(0)
    h = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    r = tl.arange(0, BQ * GP)
    qi = r // GP  # query inside the block
    g = r % GP
    t = (q0 + blk * BQ + qi).to(tl.int64)
    row_ok = (t < T) & (g < G)
    dd = tl.arange(0, DP)
    d_ok = dd < D
    heads = h * G + g
    q = tl.load(q_ptr + b * sq_b + t[:, None] * sq_t + heads[:, None] * sq_h + dd[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)  # [BQ*GP, DP]
    m_i = tl.full((BQ * GP,), float("-inf"), tl.float32)
    l_i = tl.zeros((BQ * GP,), tl.float32)
    acc = tl.zeros((BQ * GP, DP), tl.float32)
    k_base = k_ptr + b * sk_b + h * sk_h
    v_base = v_ptr + b * sv_b + h * sv_h
    u_off = b * su_b + blk.to(tl.int64) * su_blk
    n_union = tl.load(count_ptr + b * n_blk + blk)
    for j0 in range(0, n_union, BLOCK_N):
        j = j0 + tl.arange(0, BLOCK_N)
        live = j < n_union
        sel = tl.load(uidx_ptr + u_off + j, mask=live, other=0).to(tl.int64)
        bits = tl.load(ubits_ptr + u_off + j, mask=live, other=0)
        kk = tl.load(k_base + sel[:, None] * sk_s + dd[None, :], mask=live[:, None] & d_ok[None, :], other=0.0)
        s = tl.dot(q, tl.trans(kk), input_precision=PRECISION) * scale_log2  # [M, BN]
        allowed = ((bits[None, :] >> qi[:, None]) & 1) != 0
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_use[:, None])
        alpha = tl.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        vv = tl.load(v_base + sel[:, None] * sv_s + dd[None, :], mask=live[:, None] & d_ok[None, :], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(vv.dtype), vv, input_precision=PRECISION)
        m_i = m_new
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(o_ptr + b * so_b + t[:, None] * so_t + heads[:, None] * so_h + dd[None, :],
             out.to(o_ptr.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])


def block_queries(G: int) -> int:
    """Queries per block: about 128 tile rows (BQ x padded G), at most 32 (one bit each in an int32)."""
    return max(1, min(32, 128 // pow2(G)))


def build_union(
    idx: torch.Tensor, q0: int, rows: int, width: int, bq: int, bitmap: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Union of the index sets of each block of ``bq`` queries in rows ``q0 .. q0 + rows`` of idx [B, T, K].

    ``width`` bounds every index of these rows; ``bitmap`` is int32 scratch of at least B * blocks * width.
    Returns (keys [B, nblk, cap] int32 ascending, bits [B, nblk, cap] int32, count [B, nblk] int32).
    """
    B, _, K = idx.shape
    n_blk = triton.cdiv(rows, bq)
    cap = min(bq * K, width)
    mask = bitmap[: B * n_blk * width].view(B, n_blk, width)
    mask.zero_()
    keys = torch.empty(B, n_blk, cap, dtype=torch.int32, device=idx.device)
    bits = torch.empty(B, n_blk, cap, dtype=torch.int32, device=idx.device)
    count = torch.empty(B, n_blk, dtype=torch.int32, device=idx.device)
    _scatter_bits_kernel[(rows, B)](
        idx, mask, q0, K, bq, idx.stride(0), idx.stride(1), mask.stride(0), mask.stride(1),
        BLOCK=min(1024, pow2(K, 16)), num_warps=4,
    )
    _compact_kernel[(n_blk, B)](
        mask, keys, bits, count, width, mask.stride(0), mask.stride(1), keys.stride(0), keys.stride(1), n_blk,
        BLOCK=min(2048, pow2(width, 16)), num_warps=8,
    )
    return keys, bits, count


def launch_block_union(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, union: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    q0: int, bq: int, scale: float, out: torch.Tensor,
) -> None:
    """Attention of the blocks starting at query ``q0`` over their unions (from build_union)."""
    keys, bits, count = union
    B, T, Hq, D = q.shape
    Hkv = k.shape[2]
    G = Hq // Hkv
    n_blk = keys.shape[1]
    GP, DP = pow2(G), pow2(D, 16)
    rows = bq * GP
    _block_union_kernel[(n_blk, Hkv, B)](
        q, k, v, keys, bits, count, out,
        q0, T, G, D, n_blk, scale * LOG2E,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), keys.stride(0), keys.stride(1),
        out.stride(0), out.stride(1), out.stride(2),
        BQ=bq, GP=GP, DP=DP, BLOCK_N=UNION_CONFIG["block_n"] if rows * DP <= 128 * 128 else 32,
        PRECISION=dot_precision(q.dtype),
        num_warps=UNION_CONFIG["num_warps"] if rows >= 128 else 4, num_stages=UNION_CONFIG["num_stages"],
    )
