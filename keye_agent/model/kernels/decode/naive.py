"""Plain PyTorch references of the decode-step kernels (float32 math), written out for the tests."""

from __future__ import annotations

import torch

__all__ = ["add_rmsnorm_ref", "decode_attention_ref", "moe_decode_ref", "norm_rope_ref"]


def add_rmsnorm_ref(x: torch.Tensor, deltas: torch.Tensor | None, weight: torch.Tensor, eps: float,
                    router: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(res = x + sum_p deltas[p] in float32, RMSNorm(res) * weight in x's dtype, router logits float32 or None)."""
    res = x.float() + (deltas.float().sum(0) if deltas is not None else 0.0)
    out = res * torch.rsqrt(res.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    out = out.to(x.dtype)
    logits = out.float() @ router.float().T if router is not None else None
    return res, out, logits


def norm_rope_ref(x: torch.Tensor, weight: torch.Tensor, eps: float, cos: torch.Tensor, sin: torch.Tensor,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-head RMSNorm (LayerNorm with ``bias``) then NeoX RoPE: x [B, h, d], cos/sin [B, d] -> float32."""
    xf = x.float()
    if bias is None:
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    else:
        xf = torch.nn.functional.layer_norm(xf, (xf.shape[-1],), weight.float(), bias.float(), eps)
    x1, x2 = xf.chunk(2, dim=-1)
    return xf * cos[:, None] + torch.cat((-x2, x1), dim=-1) * sin[:, None]


def decode_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: int, scale: float) -> torch.Tensor:
    """q [B, Hq, D] over keys 0..pos of k/v [B, S, Hkv, D] -> [B, Hq, D] float32."""
    g = q.shape[1] // k.shape[2]
    kk = k[:, : pos + 1].float().repeat_interleave(g, dim=2)  # [B, n, Hq, D]
    vv = v[:, : pos + 1].float().repeat_interleave(g, dim=2)
    probs = torch.softmax(torch.einsum("bhd,bnhd->bhn", q.float(), kk) * scale, dim=-1)
    return torch.einsum("bhn,bnhd->bhd", probs, vv)


def moe_decode_ref(x: torch.Tensor, logits: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor, topk: int,
                   norm_topk: bool) -> torch.Tensor:
    """Softmax router, top-k, optional renormalisation, one SwiGLU expert at a time: [B, H] float32."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, chosen = torch.topk(probs, topk, dim=-1)
    if norm_topk:
        weights = weights / weights.sum(-1, keepdim=True)
    inter = down.shape[1]
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for b in range(x.shape[0]):
        for j in range(topk):
            e = int(chosen[b, j])
            h = x[b].float() @ gate_up[e].float()
            act = torch.nn.functional.silu(h[:inter]) * h[inter:]
            out[b] += weights[b, j] * (act @ down[e].float())
    return out


def paged_decode_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor,
                               lengths: torch.Tensor, scale: float) -> torch.Tensor:
    """q [B, Hq, D] of row b over the keys at slots table[b, :lengths[b]] of k/v [N, Hkv, D] -> [B, Hq, D] float32."""
    out = []
    for b in range(q.shape[0]):
        sl = table[b, : int(lengths[b])]
        out.append(decode_attention_ref(q[b: b + 1], k[sl][None], v[sl][None], sl.shape[0] - 1, scale))
    return torch.cat(out)
