"""Float32 reference of the DSA top-k selection (MODEL.md step 5), written out explicitly."""

from __future__ import annotations

import torch

__all__ = ["topk_select_ref", "selection_problem"]


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


def selection_problem(
    idx: torch.Tensor, ref_scores: torch.Tensor, start: int, topk: int, rel_tol: float, rows: list[int] | None = None
) -> str | None:
    """Check a top-k result against reference scores by the acceptance rule; None if it passes, else the reason.

    Row t must hold exactly n = min(topk, start + t + 1) distinct indices, all <= start + t, in its first n slots
    and -1 after them; every selected key must score, in the reference, at least the reference's n-th best score
    minus ``rel_tol * |n-th score| + 1e-5 * max |visible score|`` (ties and rounding may swap keys at the
    boundary). ``idx`` [B, T, K]; ``ref_scores`` [B, T', S] holds the rows ``rows`` (default all T) of idx.
    """
    idx, ref_scores = idx.cpu().long(), ref_scores.cpu().double()
    B, T, K = idx.shape
    S = ref_scores.shape[2]
    if K != min(topk, S):
        return f"K={K}, expected min(topk={topk}, S={S})"
    for b in range(B):
        for i, t in enumerate(range(T) if rows is None else rows):
            visible = start + t + 1
            n = min(topk, visible)
            row = idx[b, t]
            if not (row[n:] == -1).all():
                return f"row {b},{t}: slots past {n} must be -1, got {row[n:].tolist()[:8]}"
            sel = row[:n]
            if not ((sel >= 0) & (sel < visible)).all():
                return f"row {b},{t}: indices outside [0, {visible}): {sel.tolist()[:8]}"
            if sel.unique().numel() != n:
                return f"row {b},{t}: {n} slots but {sel.unique().numel()} distinct indices"
            vis = ref_scores[b, i, :visible]
            kth = vis.topk(n).values[-1]
            tol = rel_tol * kth.abs() + 1e-5 * vis.abs().max()
            worst = vis[sel].min()
            if worst < kth - tol:
                return f"row {b},{t}: selected score {float(worst)} < k-th {float(kth)} - {float(tol)}"
    return None
