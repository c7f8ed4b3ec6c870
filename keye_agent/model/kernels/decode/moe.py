"""Fused MoE for one decode token (or a few): routing, gate_up + SiLU-mul, down, reading only the chosen experts.

Two launches after the router logits (which ``norms.add_rmsnorm`` computes with the post-attention norm):

1. ``_gate_up_kernel``, grid (B * k, I / BLOCK_I): each program routes its row from the logits (softmax, top-k by
   repeated max, ties to the lower expert, optional renormalisation), picks its slot's expert and multiplies the
   token by that expert's gate and up columns of its block: ``act = silu(x W_g) * (x W_u) * weight`` (float32).
2. ``_down_kernel``, grid (H / BLOCK_H, B * k): ``partial[slot, b] = act[b, slot] @ down[expert]``; the k
   partials are summed by the next residual add (``add_rmsnorm``'s deltas), so no atomics and no extra launch.

Each (token, slot) reads its own expert's weights: 75.5 MB per token for the 30B preset's 8 experts of 768 x 2048.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from keye_agent.model.kernels._checks import pow2

__all__ = ["moe_decode", "MOE_DECODE_CONFIG"]

MOE_DECODE_CONFIG = {"block_i": 32, "block_k": 128, "gu_warps": 4, "block_h": 64, "block_j": 128, "down_warps": 4}
"""Launch settings of the two kernels (benchmarks/model_decode.py --moe-sweep times variants on the GPU)."""


@triton.jit
def _gate_up_kernel(
    x_ptr, lg_ptr, gu_ptr, act_ptr, sel_ptr, H, E, NI, TOPK, sx_b, sg_e, sg_h,
    EP: tl.constexpr, KSEL: tl.constexpr, NORM: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_K: tl.constexpr,
):
    bs = tl.program_id(0)
    pid_i = tl.program_id(1)
    b = (bs // TOPK).to(tl.int64)
    slot = bs % TOPK
    ee = tl.arange(0, EP)
    lg = tl.load(lg_ptr + b * E + ee, mask=ee < E, other=float("-inf"))
    p = tl.exp(lg - tl.max(lg, 0))
    p = p / tl.sum(p, 0)
    p = tl.where(ee < E, p, -1.0)
    total = 0.0
    my_e = 0
    my_w = 0.0
    for j in tl.static_range(KSEL):
        mj = tl.max(p, 0)
        ej = tl.min(tl.where(p == mj, ee, EP), 0)
        total += mj
        my_e = tl.where(slot == j, ej, my_e)
        my_w = tl.where(slot == j, mj, my_w)
        p = tl.where(ee == ej, -1.0, p)
    if NORM:
        my_w = my_w / total
    if pid_i == 0:
        tl.store(sel_ptr + bs, my_e)
    i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    i_ok = i < NI
    acc_g = tl.zeros((BLOCK_K, BLOCK_I), tl.float32)
    acc_u = tl.zeros((BLOCK_K, BLOCK_I), tl.float32)
    w_base = gu_ptr + my_e.to(tl.int64) * sg_e
    for k0 in range(0, H, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        k_ok = kk < H
        xk = tl.load(x_ptr + b * sx_b + kk, mask=k_ok, other=0.0).to(tl.float32)
        rows = w_base + kk[:, None].to(tl.int64) * sg_h
        m = k_ok[:, None] & i_ok[None, :]
        wg = tl.load(rows + i[None, :], mask=m, other=0.0)
        wu = tl.load(rows + NI + i[None, :], mask=m, other=0.0)
        acc_g += xk[:, None] * wg.to(tl.float32)
        acc_u += xk[:, None] * wu.to(tl.float32)
    g = tl.sum(acc_g, 0)
    u = tl.sum(acc_u, 0)
    act = g / (1.0 + tl.exp(-g)) * u * my_w
    tl.store(act_ptr + bs.to(tl.int64) * NI + i, act, mask=i_ok)


@triton.jit
def _down_kernel(
    act_ptr, sel_ptr, dn_ptr, out_ptr, H, NI, TOPK, B, sd_e, sd_i,
    BLOCK_H: tl.constexpr, BLOCK_J: tl.constexpr,
):
    pid_h = tl.program_id(0)
    bs = tl.program_id(1)
    b = bs // TOPK
    slot = bs % TOPK
    e = tl.load(sel_ptr + bs).to(tl.int64)
    hh = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    h_ok = hh < H
    acc = tl.zeros((BLOCK_J, BLOCK_H), tl.float32)
    w_base = dn_ptr + e * sd_e
    for j0 in range(0, NI, BLOCK_J):
        jj = j0 + tl.arange(0, BLOCK_J)
        j_ok = jj < NI
        a = tl.load(act_ptr + bs.to(tl.int64) * NI + jj, mask=j_ok, other=0.0)
        w = tl.load(w_base + jj[:, None].to(tl.int64) * sd_i + hh[None, :], mask=j_ok[:, None] & h_ok[None, :],
                    other=0.0)
        acc += a[:, None] * w.to(tl.float32)
    out = tl.sum(acc, 0)
    tl.store(out_ptr + (slot.to(tl.int64) * B + b) * H + hh, out, mask=h_ok)


def moe_decode(
    x: torch.Tensor, logits: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor, topk: int, norm_topk: bool,
    partial: torch.Tensor,
) -> None:
    """partial [topk, B, H] float32 <- each slot's weighted expert output for x [B, H] (normed hidden states) and
    router logits [B, E] float32; gate_up [E, H, 2I], down [E, I, H] (the model's fused layout, unit last strides).
    ``partial.sum(0)`` is the MoE output."""
    B, H = x.shape
    E, NI = gate_up.shape[0], down.shape[1]
    cfg = MOE_DECODE_CONFIG
    act = torch.empty(B * topk, NI, dtype=torch.float32, device=x.device)
    sel = torch.empty(B * topk, dtype=torch.int32, device=x.device)
    bi, bk = min(cfg["block_i"], pow2(NI)), min(cfg["block_k"], pow2(H))
    _gate_up_kernel[(B * topk, triton.cdiv(NI, bi))](
        x, logits, gate_up, act, sel, H, E, NI, topk, x.stride(0), gate_up.stride(0), gate_up.stride(1),
        EP=pow2(E), KSEL=topk, NORM=norm_topk, BLOCK_I=bi, BLOCK_K=bk, num_warps=cfg["gu_warps"],
    )
    bh, bj = min(cfg["block_h"], pow2(H)), min(cfg["block_j"], pow2(NI))
    _down_kernel[(triton.cdiv(H, bh), B * topk)](
        act, sel, down, partial, H, NI, topk, B, down.stride(0), down.stride(1),
        BLOCK_H=bh, BLOCK_J=bj, num_warps=cfg["down_warps"],
    )
