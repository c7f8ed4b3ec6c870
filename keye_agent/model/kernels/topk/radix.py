"""Triton top-k selection by radix select, one program per query row (MODEL.md step 5).

Scores map to unsigned keys that sort like the floats (flip every bit of a negative number, the sign bit of a
positive one). Each level histograms 8 more key bits among the elements whose higher bits match the prefix chosen
so far, and picks the digit holding the k-th largest key. After KEY_BITS / 8 levels the threshold key is exact; a
last pass writes, in ascending key-position order, every element above it and the first ties at it. The row is
read KEY_BITS / 8 + 1 times: float32 rows 5 times, the float16 chunk rows of the streamed indexer 3 times. A row
whose visible range is not longer than k selects all of it without reading a score.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from keye_agent.model.kernels._checks import pow2

__all__ = ["topk_select", "launch_topk", "TOPK_CONFIG"]

TOPK_CONFIG = {"block": 1024, "num_warps": 4, "few_rows_warps": 16}
"""Launch settings (the best of benchmarks/dsa.py --sweep on the H200, 128K prefill: 173 ms vs 184 ms for 4096 x 8
warps, indexer included)."""


@triton.jit
def _ordered_key(x, KEY_BITS: tl.constexpr):
    """Unsigned key (in uint32) whose order is the float order of x."""
    if KEY_BITS == 32:
        bits = x.to(tl.uint32, bitcast=True)
        flip = tl.where((bits >> 31) != 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)
        return bits ^ flip
    else:
        bits = x.to(tl.uint16, bitcast=True).to(tl.uint32)
        flip = tl.where((bits >> 15) != 0, 0xFFFF, 0x8000).to(tl.uint32)
        return bits ^ flip


@triton.jit
def _topk_kernel(
    s_ptr, o_ptr, T, S, start, t_base, topk, K_out,
    ss_b, ss_t, so_b, so_t,
    KEY_BITS: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    n = tl.minimum(start + t_base + row + 1, S)  # visible keys of this query
    s_row = s_ptr + b * ss_b + row.to(tl.int64) * ss_t
    o_row = o_ptr + b * so_b + (t_base + row).to(tl.int64) * so_t
    offs = tl.arange(0, BLOCK)
    if n <= topk:
        for c0 in range(0, K_out, BLOCK):
            c = c0 + offs
            tl.store(o_row + c, tl.where(c < n, c, -1), mask=c < K_out)
    else:
        bins = tl.arange(0, 256)
        prefix = tl.zeros((), tl.uint32)
        remaining = topk  # how many keys are still to be taken at or below the prefix
        for level in tl.static_range(KEY_BITS // 8):
            shift = KEY_BITS - 8 * (level + 1)
            hist = tl.zeros((256,), tl.int32)
            for c0 in range(0, n, BLOCK):
                c = c0 + offs
                key = _ordered_key(tl.load(s_row + c, mask=c < n, other=0.0), KEY_BITS)
                live = c < n
                if level > 0:
                    live = live & ((key >> (shift + 8)) == prefix)
                digit = ((key >> shift) & 0xFF).to(tl.int32)
                hist += tl.histogram(digit, 256, mask=live)
            # at_or_above[d] = how many live keys have a digit >= d; take the highest d reaching `remaining`
            at_or_above = tl.sum(hist) - tl.cumsum(hist, 0) + hist
            chosen = tl.max(tl.where(at_or_above >= remaining, bins, 0))
            remaining -= tl.sum(tl.where(bins > chosen, hist, 0))
            prefix = (prefix << 8) | chosen.to(tl.uint32)
        # prefix is now the k-th largest key; `remaining` of its ties are taken, in position order
        written = 0
        ties_seen = 0
        for c0 in range(0, n, BLOCK):
            c = c0 + offs
            live = c < n
            key = _ordered_key(tl.load(s_row + c, mask=live, other=0.0), KEY_BITS)
            tie = live & (key == prefix)
            tie_rank = ties_seen + tl.cumsum(tie.to(tl.int32), 0) - 1
            take = (live & (key > prefix)) | (tie & (tie_rank < remaining))
            take_i = take.to(tl.int32)
            pos = written + tl.cumsum(take_i, 0) - 1
            tl.store(o_row + pos, c, mask=take)
            written += tl.sum(take_i)
            ties_seen += tl.sum(tie.to(tl.int32))
        for c0 in range(topk, K_out, BLOCK):
            c = c0 + offs
            tl.store(o_row + c, tl.full((BLOCK,), -1, tl.int32), mask=c < K_out)


def launch_topk(
    scores: torch.Tensor, out: torch.Tensor, start: int, t_base: int, n_rows: int, S: int, topk: int
) -> None:
    """Select rows ``t_base .. t_base + n_rows`` of ``out`` [B, T, K] from ``scores`` [B, n_rows, >= visible].

    ``scores`` is float32 (5 passes) or float16 (3 passes); S is the full key count (bounds K and visibility).
    """
    B = scores.shape[0]
    K_out = out.shape[2]
    block = min(TOPK_CONFIG["block"], pow2(min(S, TOPK_CONFIG["block"]), 16))
    _topk_kernel[(n_rows, B)](
        scores, out, n_rows, S, start, t_base, topk, K_out,
        scores.stride(0), scores.stride(1), out.stride(0), out.stride(1),
        KEY_BITS=16 if scores.dtype == torch.float16 else 32, BLOCK=block,
        num_warps=TOPK_CONFIG["few_rows_warps"] if n_rows * B < 256 and block >= 4096 else TOPK_CONFIG["num_warps"],
    )


def topk_select(scores: torch.Tensor, start: int, topk: int) -> torch.Tensor:
    """Triton top-k: scores [B, T, S] float32 -> idx [B, T, min(topk, S)] int32, ascending, -1 where unused."""
    if scores.dim() != 3:
        raise ValueError(f"scores must be [B, T, S], got shape {tuple(scores.shape)}")
    if scores.dtype not in (torch.float32, torch.float16):
        raise ValueError(f"scores must be float32 (or float16), got {scores.dtype}")
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if scores.stride(-1) != 1:
        scores = scores.contiguous()
    B, T, S = scores.shape
    if start < 0 or start + T > S:
        raise ValueError(f"need 0 <= start and start + T <= S, got start={start}, T={T}, S={S}")
    out = torch.empty(B, T, min(topk, S), dtype=torch.int32, device=scores.device)
    if T and B:
        launch_topk(scores, out, start, 0, T, S, topk)
    return out
