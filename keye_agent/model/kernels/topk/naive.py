"""Float32 reference of the DSA top-k selection (MODEL.md step 5), written out explicitly."""

from __future__ import annotations

import torch

__all__ = ["topk_select_ref"]


def topk_select_ref(scores: torch.Tensor, start: int, topk: int) -> torch.Tensor:
    """Indices of the ``topk`` highest scores each query may see, in ascending key order.

    Args:
        scores: [B, T, S] scores; query t sees keys ``s <= start + t`` (entries past that are ignored).
        start: absolute position of query 0.
        topk: keys kept per query.

    Returns:
        [B, T, K] int32 with ``K = min(topk, S)``. Row t holds ``n = min(topk, start + t + 1)`` distinct key
        indices sorted ascending, then -1. When ``start + t + 1 <= topk`` the row is every key ``0 .. start + t``.
    """
    B, T, S = scores.shape
    K = min(topk, S)
    out = torch.full((B, T, K), -1, dtype=torch.int32, device=scores.device)
    for t in range(T):
        visible = min(start + t + 1, S)
        if visible <= topk:
            out[:, t, :visible] = torch.arange(visible, dtype=torch.int32, device=scores.device)
            continue
        row = scores[:, t, :visible].float()  # [B, visible]
        chosen = torch.topk(row, K, dim=-1).indices  # [B, K]
        out[:, t, :] = torch.sort(chosen, dim=-1).values.to(torch.int32)
    return out
