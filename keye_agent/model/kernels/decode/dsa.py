"""DSA for one decode token at a position read from device memory: index scores over the filled part of the index
cache, the split top-k, and the split sparse attention, all with fixed grids (so a CUDA graph replays them).

``_decode_scores_kernel``, grid (B, NPROG): program ``p`` scores keys ``[p * span, (p + 1) * span) ∩ [0, pos]``
with ``span = ceil(ceil((pos + 1) / NPROG) / BLOCK_S) * BLOCK_S`` (float16, like the streamed indexer, see
indexer/streamed.py for the rounding rule) and adds each row's histogram of the keys' high byte into the top-k
workspace (zeroed by ``norms.qkv_post``), the first radix level of topk/split.py. A row whose filled length is not
longer than top-k selects every key and scores nothing.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from keye_agent.model.kernels._checks import dot_precision, pow2
from keye_agent.model.kernels.sparse_attention.per_query import launch_per_query
from keye_agent.model.kernels.topk.split import LOW_BITS, WS_STRIDE, launch_split_topk

__all__ = ["decode_index_scores", "dsa_decode", "DSA_DECODE_CONFIG", "WS_STRIDE"]

DSA_DECODE_CONFIG = {"nprog": 256, "block_s": 128, "num_warps": 4, "topk_split": 64, "attn_nsplit": 0}
"""Launch settings: score programs per row, keys per tile, top-k collect programs, attention splits (0: auto)."""

FP16_MAX = tl.constexpr(65504.0)
HIST_LOW = tl.constexpr(LOW_BITS)
HIST_BINS = tl.constexpr(1 << (16 - LOW_BITS))


@triton.jit
def _decode_scores_kernel(
    q_ptr, w_ptr, k_ptr, pos_ptr, o_ptr, ws_ptr, H, D, topk, scale,
    sq_b, sq_h, sw_b, sk_b, sk_s, so_b, s_ws,
    HP: tl.constexpr, DP: tl.constexpr, BLOCK_S: tl.constexpr, NPROG: tl.constexpr, PRECISION: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1)
    n = tl.load(pos_ptr).to(tl.int32) + 1
    if n > topk:
        span = tl.cdiv(tl.cdiv(n, NPROG), BLOCK_S) * BLOCK_S
        lo = p * span
        hi = tl.minimum(lo + span, n)
        hh = tl.arange(0, HP)
        dd = tl.arange(0, DP)
        h_ok = hh < H
        q = tl.load(q_ptr + b * sq_b + hh[:, None] * sq_h + dd[None, :], mask=h_ok[:, None] & (dd[None, :] < D),
                    other=0.0)  # [HP, DP]
        gate = tl.load(w_ptr + b * sw_b + hh, mask=h_ok, other=0.0).to(tl.float32) * scale
        o_row = o_ptr + b * so_b
        hist = tl.zeros((HIST_BINS,), tl.int32)
        for s0 in range(lo, hi, BLOCK_S):
            s_idx = s0 + tl.arange(0, BLOCK_S)
            s_ok = s_idx < hi
            kk = tl.load(k_ptr + b * sk_b + s_idx[:, None].to(tl.int64) * sk_s + dd[None, :],
                         mask=s_ok[:, None] & (dd[None, :] < D), other=0.0)  # [BS, DP]
            logits = tl.dot(q, tl.trans(kk), input_precision=PRECISION)  # [HP, BS]
            scores = tl.sum(tl.maximum(logits, 0.0) * gate[:, None], 0)  # [BS]
            scores = tl.minimum(tl.maximum(scores, -FP16_MAX), FP16_MAX)
            tl.store(o_row + s_idx, scores.to(tl.float16), mask=s_ok)
            # re-read as a plain 1-D block before the histogram (see indexer/scores.py: triton 3.6's histogram
            # over-counts a replicated reduced layout)
            tl.debug_barrier()
            f_val = tl.load(o_row + s_idx, mask=s_ok, other=0.0)
            bits = f_val.to(tl.uint16, bitcast=True).to(tl.uint32)
            digit = ((bits ^ tl.where((bits >> 15) != 0, 0xFFFF, 0x8000).to(tl.uint32)) >> HIST_LOW).to(tl.int32)
            hist += tl.histogram(digit, HIST_BINS, mask=s_ok)
        tl.atomic_add(ws_ptr + b * s_ws + tl.arange(0, HIST_BINS), hist, mask=hist > 0, sem="relaxed")


def decode_index_scores(
    iq: torch.Tensor, iw: torch.Tensor, ik: torch.Tensor, pos: torch.Tensor, topk: int, scores: torch.Tensor,
    ws: torch.Tensor,
) -> None:
    """scores [B, 1, S_max] float16 <- index scores of keys 0..pos (only when pos + 1 > topk) and ws[:, :256] +=
    their level-1 histogram. iq [B, Hi, di], iw [B, Hi] (strided view allowed), ik [B, S_max, di]."""
    B, H, D = iq.shape
    cfg = DSA_DECODE_CONFIG
    nprog = pow2(cfg["nprog"])
    _decode_scores_kernel[(B, nprog)](
        iq, iw, ik, pos, scores, ws, H, D, topk, D**-0.5,
        iq.stride(0), iq.stride(1), iw.stride(0), ik.stride(0), ik.stride(1), scores.stride(0), ws.stride(0),
        HP=pow2(H, 16), DP=pow2(D, 16), BLOCK_S=cfg["block_s"], NPROG=nprog, PRECISION=dot_precision(iq.dtype),
        num_warps=cfg["num_warps"],
    )


def dsa_decode(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, iq: torch.Tensor, iw: torch.Tensor, ik: torch.Tensor,
    pos: torch.Tensor, topk: int, scale: float, out: torch.Tensor, scores: torch.Tensor, ws: torch.Tensor,
    idx: torch.Tensor,
) -> None:
    """out [B, 1, Hq, D] <- DSA attention of q [B, 1, Hq, D] over the caches k/v [B, S_max, Hkv, D] at position
    pos: the top-k keys of 0..pos by index score (all of them while they fit). Workspaces: scores [B, 1, S_max]
    float16, ws [B, WS_STRIDE] int32 zeroed before the call (norms.qkv_post does it), idx [B, 1, min(topk, S_max)]
    int32."""
    B = q.shape[0]
    S = k.shape[1]
    decode_index_scores(iq, iw, ik, pos, topk, scores, ws)
    launch_split_topk(scores, idx, ws, pos, 0, 1, S, topk, split=DSA_DECODE_CONFIG["topk_split"])
    nsplit = DSA_DECODE_CONFIG["attn_nsplit"] or max(1, 256 // (B * k.shape[2]))
    launch_per_query(q, k, v, idx, scale, out, nsplit=nsplit, block_n=32 if nsplit > 1 else 0)
