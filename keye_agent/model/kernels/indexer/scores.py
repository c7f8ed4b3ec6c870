"""Triton kernel for the causal lightning-indexer scores (MODEL.md step 4).

One program computes [BLOCK_T, BLOCK_S] tiles (a span of them, holding its queries) of ``I[t, s] = sum_j w[t, j] * d**-0.5 * relu(q[t, j] . k[s])``:
the BLOCK_T queries' H heads form the rows of one matrix product against the key tile (fp32 accumulation), then
ReLU, the gate and the sum over heads run on the accumulator. Tiles wholly above the diagonal store -inf and skip
the product. ``out`` may be a float32 matrix (the public op) or a float16 chunk buffer used by the streamed top-k.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from keye_agent.model.kernels._checks import check_dims, dot_precision, pow2
from keye_agent.model.kernels.topk.split import LOW_BITS

__all__ = ["index_scores", "launch_scores"]

FP16_MAX = tl.constexpr(65504.0)
HIST_LOW = tl.constexpr(LOW_BITS)
HIST_BINS = tl.constexpr(1 << (16 - LOW_BITS))

SCORE_CONFIG = {"max_tiles": 16, "block_s": 0, "num_warps": 0, "num_stages": 3}
"""Launch settings (0 = chosen from the shapes); benchmarks/dsa.py --sweep varies them on the GPU."""


@triton.jit
def _index_scores_kernel(
    q_ptr, w_ptr, k_ptr, o_ptr, hist_ptr,
    T, S, H, D, start, t_base, scale, span,
    sq_b, sq_t, sq_h, sw_b, sw_t, sw_h, sk_b, sk_s, so_b, so_t, sh_row,
    HP: tl.constexpr, DP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr,
    OUT_FP16: tl.constexpr, PRECISION: tl.constexpr, HIST: tl.constexpr,
):
    pid_t = tl.program_id(0)
    pid_s = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    t0 = pid_t * BLOCK_T
    t_loc = t0 + tl.arange(0, BLOCK_T)  # [BT] query rows of this call
    t_abs = start + t_base + t_loc  # absolute positions
    rows = tl.arange(0, BLOCK_T * HP)  # row r = query (r // HP), head (r % HP)
    r_t = t0 + rows // HP
    r_h = rows % HP
    r_ok = (r_t < T) & (r_h < H)
    dd = tl.arange(0, DP)
    # the query tile and gates stay in registers while the program walks its span of keys
    q_tile = tl.load(
        q_ptr + b * sq_b + (t_base + r_t)[:, None].to(tl.int64) * sq_t + r_h[:, None] * sq_h + dd[None, :],
        mask=r_ok[:, None] & (dd[None, :] < D), other=0.0,
    )  # [BT*HP, DP]
    gate = tl.load(
        w_ptr + b * sw_b + (t_base + r_t).to(tl.int64) * sw_t + r_h * sw_h, mask=r_ok, other=0.0
    ).to(tl.float32) * scale  # [BT*HP]
    s_begin = pid_s * span
    s_end = tl.minimum(s_begin + span, S)
    visible_end = tl.minimum(s_end, start + t_base + t0 + BLOCK_T)  # keys past it are above the diagonal
    o_rows = o_ptr + b * so_b + t_loc[:, None].to(tl.int64) * so_t
    for s0 in range(s_begin, visible_end, BLOCK_S):
        s_idx = s0 + tl.arange(0, BLOCK_S)  # [BS]
        k_tile = tl.load(
            k_ptr + b * sk_b + s_idx[:, None].to(tl.int64) * sk_s + dd[None, :],
            mask=(s_idx[:, None] < S) & (dd[None, :] < D), other=0.0,
        )  # [BS, DP]
        logits = tl.dot(q_tile, tl.trans(k_tile), input_precision=PRECISION)  # [BT*HP, BS] fp32
        contrib = tl.maximum(logits, 0.0) * gate[:, None]
        scores = tl.sum(tl.reshape(contrib, (BLOCK_T, HP, BLOCK_S)), axis=1)  # [BT, BS]
        causal = s_idx[None, :] <= t_abs[:, None]
        if OUT_FP16:
            scores = tl.minimum(tl.maximum(scores, -FP16_MAX), FP16_MAX)
        scores = tl.where(causal, scores, float("-inf"))
        stored = scores.to(o_ptr.dtype.element_ty)
        o_mask = (t_loc[:, None] < T) & (s_idx[None, :] < s_end)
        tl.store(o_rows + s_idx[None, :], stored, mask=o_mask)
        if HIST:
            # first radix level of the split top-k: each row's histogram of the top bits of its float16 keys.
            # The tile is re-read as a flat 1-D block: triton 3.6's histogram over-counts inputs whose layout is
            # replicated across threads, which the reduced product tile can be.
            tl.debug_barrier()
            flat = tl.arange(0, BLOCK_T * BLOCK_S)
            f_row = flat // BLOCK_S
            f_col = s0 + flat % BLOCK_S
            f_ok = (t0 + f_row < T) & (f_col < s_end) & (f_col <= start + t_base + t0 + f_row)
            f_val = tl.load(o_ptr + b * so_b + (t0 + f_row).to(tl.int64) * so_t + f_col, mask=f_ok, other=0.0)
            bits = f_val.to(tl.uint16, bitcast=True).to(tl.uint32)
            digit = ((bits ^ tl.where((bits >> 15) != 0, 0xFFFF, 0x8000).to(tl.uint32)) >> HIST_LOW).to(tl.int32)
            for r in tl.static_range(BLOCK_T):
                if t0 + r < T:
                    counts = tl.histogram(digit, HIST_BINS, mask=f_ok & (f_row == r))
                    tl.atomic_add(hist_ptr + (b * T + t0 + r) * sh_row + tl.arange(0, HIST_BINS), counts,
                                  mask=counts > 0, sem="relaxed")
    for s0 in range(tl.maximum(visible_end, s_begin), s_end, BLOCK_S):
        s_idx = s0 + tl.arange(0, BLOCK_S)
        tl.store(o_rows + s_idx[None, :], tl.full((BLOCK_T, BLOCK_S), float("-inf"), o_ptr.dtype.element_ty),
                 mask=(t_loc[:, None] < T) & (s_idx[None, :] < s_end))


def _blocks(H: int, D: int, T: int) -> tuple[int, int, int, int]:
    HP = pow2(H)
    DP = pow2(D, 16)
    # about 128 product rows per tile (BLOCK_T queries x HP heads), at least 16 for tl.dot
    block_t = max(1, min(pow2(T), max(1, 128 // HP)))
    while block_t * HP < 16:
        block_t *= 2
    return HP, DP, block_t, 64 if DP > 64 else 128


def launch_scores(
    q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int, out: torch.Tensor, t_base: int, n_rows: int,
    hist: torch.Tensor | None = None,
) -> None:
    """Write scores of query rows ``t_base .. t_base + n_rows`` into ``out`` [B, n_rows, S_out] (S_out <= S).

    Keys past ``out.shape[2]`` are not computed, so a chunk buffer can stop at its last query's causal bound.
    With ``hist`` (zeroed int32 [B * n_rows, >= 2**(16 - LOW_BITS)], float16 ``out`` only) each row's histogram of
    the top bits of its float16 keys is added into it, the first level of the split top-k (topk/split.py).
    """
    B, _, H, D = q.shape
    S_out = out.shape[2]
    HP, DP, block_t, block_s = _blocks(H, D, n_rows)
    block_s = SCORE_CONFIG["block_s"] or block_s
    t_blocks, s_tiles = triton.cdiv(n_rows, block_t), triton.cdiv(S_out, block_s)
    # each program walks `tiles` key tiles with its query tile held; keep about 4096 programs or more
    tiles = 1
    while tiles < SCORE_CONFIG["max_tiles"] and B * t_blocks * triton.cdiv(s_tiles, tiles * 2) >= 4096:
        tiles *= 2
    span = tiles * block_s
    grid = (t_blocks, triton.cdiv(S_out, span), B)
    _index_scores_kernel[grid](
        q, w, k, out, out if hist is None else hist,
        n_rows, S_out, H, D, start, t_base, D**-0.5, span,
        q.stride(0), q.stride(1), q.stride(2), w.stride(0), w.stride(1), w.stride(2),
        k.stride(0), k.stride(1), out.stride(0), out.stride(1), 0 if hist is None else hist.stride(0),
        HP=HP, DP=DP, BLOCK_T=block_t, BLOCK_S=block_s,
        OUT_FP16=out.dtype == torch.float16, PRECISION=dot_precision(q.dtype),
        HIST=hist is not None,
        num_warps=SCORE_CONFIG["num_warps"] or (8 if block_t * HP >= 128 else 4), num_stages=SCORE_CONFIG["num_stages"],
    )


def check_indexer_inputs(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int) -> None:
    """Raise ValueError naming the mismatch unless q [B,T,H,d], w [B,T,H], k [B,S,d] agree."""
    check_dims("q", q, 4, "[B, T, H, d]")
    check_dims("k", k, 3, "[B, S, d]")
    if w.dim() != 3 or tuple(w.shape) != tuple(q.shape[:3]):
        raise ValueError(f"w must be [B, T, H] = {tuple(q.shape[:3])}, got shape {tuple(w.shape)}")
    if k.shape[0] != q.shape[0] or k.shape[2] != q.shape[3]:
        raise ValueError(f"k must be [B={q.shape[0]}, S, d={q.shape[3]}], got shape {tuple(k.shape)}")
    if k.dtype != q.dtype:
        raise ValueError(f"q and k must share a dtype, got {q.dtype} and {k.dtype}")
    if start < 0 or start + q.shape[1] > k.shape[1]:
        raise ValueError(f"need 0 <= start and start + T <= S, got start={start}, T={q.shape[1]}, S={k.shape[1]}")


def index_scores(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int) -> torch.Tensor:
    """Triton index scores: q [B,T,H,d], w [B,T,H], k [B,S,d] -> [B,T,S] float32, -inf above the diagonal."""
    check_indexer_inputs(q, w, k, start)
    B, T = q.shape[:2]
    out = torch.empty(B, T, k.shape[1], dtype=torch.float32, device=q.device)
    if T:
        launch_scores(q, w, k, start, out, 0, T)
    return out
