"""Fused small ops of the decode step: residual add + RMSNorm (+ router logits), QK-norm + RoPE + cache write.

``add_rmsnorm``: ``res = x + sum_p deltas[p]`` (float32, optional), ``out = RMSNorm(res) * weight`` in out's dtype,
and with ``router`` the logits ``out @ router.T`` (float32) of the MoE gate, computed by the same launch: the
experts are split over programs, each recomputing the (cheap) norm of its row.

``qkv_post``: the one GEMV of a decode step writes ``qkv`` [B, Hq*D + 2*Hkv*D (+ Hi*di + Hi + di)]; one program per
head applies the per-head RMSNorm (q, k, index q) or LayerNorm (index k), the NeoX RoPE from precomputed cos/sin
rows, and writes q and the index q to their buffers and k, v and the index key into the cache at slot ``pos`` (a
device tensor), so no host integer enters the captured step. It also zeroes the DSA top-k workspace.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from keye_agent.model.kernels._checks import pow2

__all__ = ["add_rmsnorm", "qkv_post", "ROUTER_SPLIT"]

ROUTER_SPLIT = 16
"""Programs per row that share the router's experts (each reads E / ROUTER_SPLIT rows of the gate)."""


@triton.jit
def _add_rmsnorm_kernel(
    x_ptr, d_ptr, w_ptr, res_ptr, out_ptr, r_ptr, lg_ptr,
    H, P, E, eps, sx_b, sd_p, sd_b,
    BLOCK_H: tl.constexpr, WRITE_RES: tl.constexpr, ROUTER: tl.constexpr, EB: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    part = tl.program_id(1)
    hh = tl.arange(0, BLOCK_H)
    ok = hh < H
    x = tl.load(x_ptr + b * sx_b + hh, mask=ok, other=0.0).to(tl.float32)
    for p in range(P):
        x += tl.load(d_ptr + p * sd_p + b * sd_b + hh, mask=ok, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, 0) / H + eps)
    y = (x * rstd * tl.load(w_ptr + hh, mask=ok, other=0.0).to(tl.float32)).to(out_ptr.dtype.element_ty)
    if part == 0:
        if WRITE_RES:
            tl.store(res_ptr + b * H + hh, x, mask=ok)
        tl.store(out_ptr + b * H + hh, y, mask=ok)
    if ROUTER:
        e = part * EB + tl.arange(0, EB)
        e_ok = e < E
        wr = tl.load(r_ptr + e[:, None].to(tl.int64) * H + hh[None, :], mask=e_ok[:, None] & ok[None, :], other=0.0)
        logits = tl.sum(wr.to(tl.float32) * y.to(tl.float32)[None, :], 1)  # [EB]
        tl.store(lg_ptr + b * E + e, logits, mask=e_ok)


def add_rmsnorm(
    x: torch.Tensor, deltas: torch.Tensor | None, weight: torch.Tensor, eps: float, out: torch.Tensor,
    res: torch.Tensor | None = None, router: torch.Tensor | None = None, logits: torch.Tensor | None = None,
) -> None:
    """out [B, H] <- RMSNorm(x + sum_p deltas[p]) * weight; res [B, H] float32 <- the sum (if given);
    logits [B, E] float32 <- out @ router.T (if router [E, H] is given). x [B, H] (unit last stride), deltas
    [P, B, H] contiguous or None. ``res`` must not alias ``x`` when ``router`` is given (programs share the row)."""
    B, H = x.shape
    P = 0 if deltas is None else deltas.shape[0]
    E = 0 if router is None else router.shape[0]
    eb = pow2(triton.cdiv(E, ROUTER_SPLIT)) if E else 1
    parts = triton.cdiv(E, eb) if E else 1
    d = x if deltas is None else deltas
    _add_rmsnorm_kernel[(B, parts)](
        x, d, weight, x if res is None else res, out, x if router is None else router,
        x if logits is None else logits,
        H, P, E, eps, x.stride(0), d.stride(0) if P else 0, d.stride(1) if P else 0,
        BLOCK_H=pow2(H), WRITE_RES=res is not None, ROUTER=router is not None, EB=eb,
        num_warps=8 if H >= 2048 else 4,
    )


@triton.jit
def _norm_rope(src, w_ptr, bias_ptr, cos_ptr, sin_ptr, dst, dim, eps,
               LAYER: tl.constexpr, NORM: tl.constexpr, ROPE: tl.constexpr, BLOCK: tl.constexpr):
    """dst[:dim] <- rope(norm(src[:dim])) (float32 math; RMSNorm or LayerNorm with bias; NeoX half split)."""
    dd = tl.arange(0, BLOCK)
    ok = dd < dim
    x = tl.load(src + dd, mask=ok, other=0.0).to(tl.float32)
    if NORM:
        half = dim // 2
        rot = tl.where(dd < half, dd + half, dd - half)
        xr = tl.load(src + rot, mask=ok, other=0.0).to(tl.float32)
        if LAYER:
            mean = tl.sum(x, 0) / dim
            xc = tl.where(ok, x - mean, 0.0)
            rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, 0) / dim + eps)
            x = xc * rstd * tl.load(w_ptr + dd, mask=ok, other=0.0).to(tl.float32) \
                + tl.load(bias_ptr + dd, mask=ok, other=0.0).to(tl.float32)
            xr = (xr - mean) * rstd * tl.load(w_ptr + rot, mask=ok, other=0.0).to(tl.float32) \
                + tl.load(bias_ptr + rot, mask=ok, other=0.0).to(tl.float32)
        else:
            rstd = 1.0 / tl.sqrt(tl.sum(x * x, 0) / dim + eps)
            x = x * rstd * tl.load(w_ptr + dd, mask=ok, other=0.0).to(tl.float32)
            xr = xr * rstd * tl.load(w_ptr + rot, mask=ok, other=0.0).to(tl.float32)
        if ROPE:
            c = tl.load(cos_ptr + dd, mask=ok, other=0.0)
            s = tl.load(sin_ptr + dd, mask=ok, other=0.0)
            x = x * c + tl.where(dd < half, -xr, xr) * s
    tl.store(dst + dd, x.to(dst.dtype.element_ty), mask=ok)


@triton.jit
def _qkv_post_kernel(
    qkv_ptr, pos_ptr, qn_ptr, kn_ptr, cos_ptr, sin_ptr, q_out, k_cache, v_cache,
    iqn_ptr, ikn_w, ikn_b, icos_ptr, isin_ptr, iq_out, ik_cache, ws_ptr,
    Hq, Hkv, D, Hi, Di, eps, ieps, ws_n,
    s_qkv, s_q_b, s_q_h, sk_b, sk_s, sk_h, sv_b, sv_s, sv_h, s_cos, s_iq_b, s_iq_h, s_ik_b, s_ik_s, s_icos, s_ws,
    BLOCK: tl.constexpr, INDEX: tl.constexpr, WS_BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1)
    pos = tl.load(pos_ptr).to(tl.int64)
    row = qkv_ptr + b * s_qkv
    if j < Hq:
        _norm_rope(row + j * D, qn_ptr, qn_ptr, cos_ptr + b * s_cos, sin_ptr + b * s_cos,
                   q_out + b * s_q_b + j * s_q_h, D, eps, False, True, True, BLOCK)
    elif j < Hq + Hkv:
        h = j - Hq
        _norm_rope(row + (Hq + h) * D, kn_ptr, kn_ptr, cos_ptr + b * s_cos, sin_ptr + b * s_cos,
                   k_cache + b * sk_b + pos * sk_s + h * sk_h, D, eps, False, True, True, BLOCK)
    elif j < Hq + 2 * Hkv:
        h = j - Hq - Hkv
        _norm_rope(row + (Hq + Hkv + h) * D, kn_ptr, kn_ptr, cos_ptr, sin_ptr,
                   v_cache + b * sv_b + pos * sv_s + h * sv_h, D, eps, False, False, False, BLOCK)
    elif INDEX:
        base = row + (Hq + 2 * Hkv) * D
        h = j - Hq - 2 * Hkv
        if h < Hi:
            _norm_rope(base + h * Di, iqn_ptr, iqn_ptr, icos_ptr + b * s_icos, isin_ptr + b * s_icos,
                       iq_out + b * s_iq_b + h * s_iq_h, Di, ieps, False, True, True, BLOCK)
        else:
            _norm_rope(base + Hi * Di + Hi, ikn_w, ikn_b, icos_ptr + b * s_icos, isin_ptr + b * s_icos,
                       ik_cache + b * s_ik_b + pos * s_ik_s, Di, ieps, True, True, True, BLOCK)
            wo = tl.arange(0, WS_BLOCK)
            tl.store(ws_ptr + b * s_ws + wo, tl.zeros((WS_BLOCK,), tl.int32), mask=wo < ws_n)


def qkv_post(
    qkv: torch.Tensor, pos: torch.Tensor, q_norm: torch.Tensor, k_norm: torch.Tensor, eps: float,
    cos: torch.Tensor, sin: torch.Tensor, q_out: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    index: tuple | None = None,
) -> None:
    """Normalise, rotate and store one decode token's heads (module docstring).

    qkv [B, N] (unit last stride); pos [1] int64; cos/sin [B, D] float32; q_out [B, Hq, D]; k_cache/v_cache
    [B, S_max, Hkv, D]. ``index`` = (iq_norm_w, ik_norm_w, ik_norm_b, eps, icos, isin [B, di], iq_out [B, Hi, di],
    ik_cache [B, S_max, di], ws [B, W] int32 zeroed here) for DSA.
    """
    B = qkv.shape[0]
    Hq, D = q_out.shape[1], q_out.shape[2]
    Hkv = k_cache.shape[2]
    n_prog = Hq + 2 * Hkv
    if index is not None:
        iqn, ikw, ikb, ieps, icos, isin, iq_out, ik_cache, ws = index
        Hi, Di = iq_out.shape[1], iq_out.shape[2]
        n_prog += Hi + 1
        idx_args = (iqn, ikw, ikb, icos, isin, iq_out, ik_cache, ws)
        idx_strides = (iq_out.stride(0), iq_out.stride(1), ik_cache.stride(0), ik_cache.stride(1), icos.stride(0),
                       ws.stride(0))
        ws_n = ws.shape[1]
    else:
        Hi, Di, ieps, ws_n = 0, 0, 0.0, 0
        idx_args = (qkv,) * 8
        idx_strides = (0,) * 6
    _qkv_post_kernel[(B, n_prog)](
        qkv, pos, q_norm, k_norm, cos, sin, q_out, k_cache, v_cache, *idx_args,
        Hq, Hkv, D, Hi, Di, eps, ieps, ws_n,
        qkv.stride(0), q_out.stride(0), q_out.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), cos.stride(0), *idx_strides,
        BLOCK=pow2(max(D, Di)), INDEX=index is not None, WS_BLOCK=pow2(max(ws_n, 1)), num_warps=1,
    )
