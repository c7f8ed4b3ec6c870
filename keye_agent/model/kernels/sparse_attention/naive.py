"""Float32 reference of DSA sparse GQA attention (MODEL.md step 6), written out explicitly."""

from __future__ import annotations

import torch

__all__ = ["sparse_attention_ref"]


def sparse_attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, scale: float
) -> torch.Tensor:
    """Each query attends, in every head, to its own selected keys only.

    Args:
        q: [B, T, Hq, D] queries.
        k: [B, S, Hkv, D] keys (may be a strided view of a larger cache).
        v: [B, S, Hkv, D] values.
        idx: [B, T, K] int32 key indices, -1 for unused slots; one set per query shared by every head.
        scale: softmax scale.

    Returns:
        [B, T, Hq, D] in q's dtype; a query with no valid index gets zeros.
    """
    B, T, Hq, D = q.shape
    Hkv = k.shape[2]
    group = Hq // Hkv
    out = torch.zeros(B, T, Hq, D, dtype=torch.float32, device=q.device)
    for b in range(B):
        for t in range(T):
            sel = idx[b, t]
            sel = sel[sel >= 0].long()  # [n]
            if sel.numel() == 0:
                continue
            kk = k[b, sel].float().repeat_interleave(group, dim=1)  # [n, Hq, D]
            vv = v[b, sel].float().repeat_interleave(group, dim=1)  # [n, Hq, D]
            logits = torch.einsum("hd,nhd->hn", q[b, t].float(), kk) * scale  # [Hq, n]
            probs = torch.softmax(logits, dim=-1)
            out[b, t] = torch.einsum("hn,nhd->hd", probs, vv)
    return out.to(q.dtype)
