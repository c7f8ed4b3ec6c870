"""Triton top-k for few long rows (decode): each row is split over many programs instead of one.

Works on the float16 scores of the streamed indexer, whose score kernel already added each row's histogram of
the key's high byte (level 1). Then:
1. ``_collect``: every program of a row finds the bin b1 holding the k-th key from that histogram, writes its
   keys above b1 straight to the output (a block reserves its slots with one atomic add), appends the keys in b1
   to a candidate list and adds the histogram of their low byte (level 2).
2. ``_finish`` (FINISH_SPLIT programs per row): from the level-2 histogram, the exact threshold; the programs
   share the candidates and write those above it and the first ties at it, reserving slots by atomic adds. The
   output order within a row is not sorted (the ops allow any order).
One pass over the row instead of three, spread over SPLIT programs, so a 128K-key decode row is not serialised.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["launch_split_topk", "split_workspace", "LOW_BITS", "WS_STRIDE"]

LOW_BITS = 8
"""Key bits below the level-1 digit: level 1 has 2**(16 - LOW_BITS) bins, level 2 has 2**LOW_BITS. (A 2048-bin
level 1 left fewer candidates but made the score kernel's histogram slower than the whole finish: 59 vs 34 us at
128K on the H200.)"""
FINISH_SPLIT = 32
"""Programs per row that share the candidate list in ``_finish``."""
LOW = tl.constexpr(LOW_BITS)
NB1 = tl.constexpr(1 << (16 - LOW_BITS))
NB2 = tl.constexpr(1 << LOW_BITS)
WS_STRIDE = (1 << (16 - LOW_BITS)) + (1 << LOW_BITS) + 8
"""Workspace row: level-1 histogram | level-2 histogram | counters (keys above b1, candidates) | padding."""


@triton.jit
def _key16(x):
    bits = x.to(tl.uint16, bitcast=True).to(tl.uint32)
    return bits ^ tl.where((bits >> 15) != 0, 0xFFFF, 0x8000).to(tl.uint32)


@triton.jit
def _pick(hist, remaining, NB: tl.constexpr):
    """Digit holding the `remaining`-th largest key, and how many keys lie in higher digits."""
    bins = tl.arange(0, NB)
    at_or_above = tl.sum(hist) - tl.cumsum(hist, 0) + hist
    chosen = tl.max(tl.where(at_or_above >= remaining, bins, 0))
    return chosen, tl.sum(tl.where(bins > chosen, hist, 0))


@triton.jit
def _collect_kernel(
    s_ptr, o_ptr, ws_ptr, cand_ptr, T, S, start, t_base, topk, seg, ss_b, ss_t, so_b, so_t, cap, ws_stride,
    pos_ptr, BLOCK: tl.constexpr, DEVICE_POS: tl.constexpr,
):
    row = tl.program_id(0)  # b * T + t
    part = tl.program_id(1)
    b = row // T
    t = row % T
    if DEVICE_POS:  # decode step of a CUDA graph: start from device memory, segments from the filled length
        start = tl.load(pos_ptr).to(tl.int32)
        n = tl.minimum(start + t_base + t + 1, S)
        seg = tl.cdiv(tl.cdiv(n, tl.num_programs(1)), BLOCK) * BLOCK
    else:
        n = tl.minimum(start + t_base + t + 1, S)
    if n > topk:
        ws = ws_ptr + row.to(tl.int64) * ws_stride  # [hist1 NB1 | hist2 NB2 | above, candidates, ...]
        b1, above1 = _pick(tl.load(ws + tl.arange(0, NB1)), topk, NB1)
        s_row = s_ptr + b.to(tl.int64) * ss_b + t.to(tl.int64) * ss_t
        o_row = o_ptr + b.to(tl.int64) * so_b + (t_base + t).to(tl.int64) * so_t
        c_row = cand_ptr + row.to(tl.int64) * cap
        hist2 = tl.zeros((NB2,), tl.int32)
        lo = part * seg
        hi = tl.minimum(lo + seg, n)
        for c0 in range(lo, hi, BLOCK):
            c = c0 + tl.arange(0, BLOCK)
            live = c < hi
            key = _key16(tl.load(s_row + c, mask=live, other=0.0))
            digit1 = (key >> LOW).to(tl.int32)
            up = live & (digit1 > b1)
            tie = live & (digit1 == b1)
            n_up = tl.sum(up.to(tl.int32))
            n_tie = tl.sum(tie.to(tl.int32))
            base_up = tl.atomic_add(ws + NB1 + NB2, n_up, sem="relaxed")
            base_tie = tl.atomic_add(ws + NB1 + NB2 + 1, n_tie, sem="relaxed")
            tl.store(o_row + base_up + tl.cumsum(up.to(tl.int32), 0) - 1, c, mask=up)
            tl.store(c_row + base_tie + tl.cumsum(tie.to(tl.int32), 0) - 1, c, mask=tie)
            hist2 += tl.histogram((key & (NB2 - 1)).to(tl.int32), NB2, mask=tie)
        tl.atomic_add(ws + NB1 + tl.arange(0, NB2), hist2, mask=hist2 > 0, sem="relaxed")


@triton.jit
def _finish_kernel(
    s_ptr, o_ptr, ws_ptr, cand_ptr, T, S, start, t_base, topk, K_out, ss_b, ss_t, so_b, so_t, cap, ws_stride,
    pos_ptr, BLOCK: tl.constexpr, DEVICE_POS: tl.constexpr,
):
    row = tl.program_id(0)
    part = tl.program_id(1)
    parts = tl.num_programs(1)
    b = row // T
    t = row % T
    if DEVICE_POS:
        start = tl.load(pos_ptr).to(tl.int32)
    n = tl.minimum(start + t_base + t + 1, S)
    o_row = o_ptr + b.to(tl.int64) * so_b + (t_base + t).to(tl.int64) * so_t
    offs = tl.arange(0, BLOCK)
    if n <= topk:
        if part == 0:
            for c0 in range(0, K_out, BLOCK):
                c = c0 + offs
                tl.store(o_row + c, tl.where(c < n, c, -1), mask=c < K_out)
    else:
        ws = ws_ptr + row.to(tl.int64) * ws_stride
        b1, above1 = _pick(tl.load(ws + tl.arange(0, NB1)), topk, NB1)
        b2, above2 = _pick(tl.load(ws + NB1 + tl.arange(0, NB2)), topk - above1, NB2)
        thr = (b1 << LOW) | b2
        ties_wanted = topk - above1 - above2
        n_cand = tl.load(ws + NB1 + NB2 + 1)
        s_row = s_ptr + b.to(tl.int64) * ss_b + t.to(tl.int64) * ss_t
        c_row = cand_ptr + row.to(tl.int64) * cap
        # slots: [0, above1) from _collect, then above2 keys above the threshold, then ties_wanted ties
        for c0 in range(part * BLOCK, n_cand, parts * BLOCK):
            j = c0 + offs
            live = j < n_cand
            pos = tl.load(c_row + j, mask=live, other=0)
            key = _key16(tl.load(s_row + pos, mask=live, other=0.0)).to(tl.int32)
            up = live & (key > thr)
            tie = live & (key == thr)
            base_up = tl.atomic_add(ws + NB1 + NB2 + 2, tl.sum(up.to(tl.int32)), sem="relaxed")
            base_tie = tl.atomic_add(ws + NB1 + NB2 + 3, tl.sum(tie.to(tl.int32)), sem="relaxed")
            tl.store(o_row + above1 + base_up + tl.cumsum(up.to(tl.int32), 0) - 1, pos, mask=up)
            rank = base_tie + tl.cumsum(tie.to(tl.int32), 0) - 1
            tl.store(o_row + above1 + above2 + rank, pos, mask=tie & (rank < ties_wanted))
        if part == 0:
            for c0 in range(topk, K_out, BLOCK):
                c = c0 + offs
                tl.store(o_row + c, tl.full((BLOCK,), -1, tl.int32), mask=c < K_out)


def split_workspace(rows: int, device: torch.device) -> torch.Tensor:
    """Zeroed int32 [rows, WS_STRIDE]: level-1 and level-2 histograms, two counters and padding per row."""
    return torch.zeros(rows, WS_STRIDE, dtype=torch.int32, device=device)


def launch_split_topk(
    scores: torch.Tensor, out: torch.Tensor, ws: torch.Tensor, start: int | torch.Tensor, t_base: int, n_rows: int,
    S: int, topk: int, split: int = 64,
) -> None:
    """Top-k of rows ``t_base .. t_base + n_rows`` from float16 ``scores`` [B, n_rows, W] whose level-1 histograms
    are already in ``ws[:, :256]`` (launch_scores with hist=ws).

    ``start`` may be a [1] int64 device tensor (a captured decode step): the kernels then read it and split the
    filled length ``start + 1`` (not W) over ``split`` programs."""
    B, _, W = scores.shape
    K_out = out.shape[2]
    device_pos = isinstance(start, torch.Tensor)
    seg = triton.cdiv(triton.cdiv(W, split), 1024) * 1024
    parts = split if device_pos else triton.cdiv(W, seg)
    cand = torch.empty(B * n_rows, W, dtype=torch.int32, device=scores.device)
    args = (n_rows, S, 0 if device_pos else start, t_base, topk)
    pos = start if device_pos else ws
    _collect_kernel[(B * n_rows, parts)](
        scores, out, ws, cand, *args, seg, scores.stride(0), scores.stride(1), out.stride(0), out.stride(1), W,
        ws.stride(0), pos, BLOCK=1024, DEVICE_POS=device_pos, num_warps=4,
    )
    _finish_kernel[(B * n_rows, FINISH_SPLIT)](
        scores, out, ws, cand, *args, K_out, scores.stride(0), scores.stride(1), out.stride(0), out.stride(1), W,
        ws.stride(0), pos, BLOCK=512, DEVICE_POS=device_pos, num_warps=4,
    )
