"""Float32 reference of the DSA lightning indexer (MODEL.md step 4), written out explicitly.

Shapes: B batch, T new queries, S keys (cache length including the new tokens), H indexer heads, d indexer dim.
Query t sits at absolute position ``start + t`` and sees keys ``s <= start + t``.
"""

from __future__ import annotations

import torch

from keye_agent.model.kernels.topk.naive import topk_select_ref

__all__ = ["index_scores_ref", "indexer_topk_ref"]


def index_scores_ref(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int) -> torch.Tensor:
    """Causal index scores ``I[t, s] = sum_j w[t, j] * d**-0.5 * relu(q[t, j] . k[s])``.

    Args:
        q: [B, T, H, d] indexer queries.
        w: [B, T, H] per-head gates.
        k: [B, S, d] index keys (one per token, shared by all heads).
        start: absolute position of query 0.

    Returns:
        [B, T, S] float32; entries with ``s > start + t`` are ``-inf``.
    """
    d = q.shape[-1]
    qf, wf, kf = q.float(), w.float(), k.float()
    logits = torch.einsum("bthd,bsd->bths", qf, kf)  # [B, T, H, S]
    scores = (torch.relu(logits) * (wf * d**-0.5).unsqueeze(-1)).sum(dim=2)  # [B, T, S]
    t_pos = start + torch.arange(q.shape[1], device=q.device).unsqueeze(1)  # [T, 1]
    s_pos = torch.arange(k.shape[1], device=q.device).unsqueeze(0)  # [1, S]
    return scores.masked_fill(s_pos > t_pos, float("-inf"))


def indexer_topk_ref(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int, topk: int) -> torch.Tensor:
    """Top-k key indices per query from the reference scores: [B, T, min(topk, S)] int32, -1 where unused."""
    return topk_select_ref(index_scores_ref(q, w, k, start), start, topk)
