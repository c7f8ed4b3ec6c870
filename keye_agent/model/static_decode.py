"""One-token decode with fixed shapes, for CUDA-graph capture: the position lives in a device tensor.

The regular forward slices the cache to the current length (shapes change every step and the position is a Python
int), which a CUDA graph cannot replay. Here every step has the same shapes: the new K/V/index key are written with
``index_copy_`` at ``pos`` (a [1] int64 device tensor), and attention runs over the whole preallocated cache with a
mask ``s <= pos``; slots past ``pos`` take no part (softmax weight exactly 0). These are plain PyTorch and compute
what ``ops.dense_attention`` / ``ops.indexer_topk`` + ``ops.sparse_attention`` reference computes for T == 1
(same selection rule: all visible keys while they fit in top-k, else the top-k by score, ties to the lower index).
The cache's unused slots must hold finite values (StaticCache starts zeroed).

``pos`` is [1] (every row at the same slot, a StaticCache) or [B] (row b's query at slot pos[b], the others of
its row masked: the batched decode of sequences of different lengths, ``model.paged``).
"""

from __future__ import annotations

import torch

from keye_agent.model import ops

__all__ = ["decode_dense", "decode_select", "decode_sparse", "write_at"]


def write_at(buf: torch.Tensor, pos: torch.Tensor, value: torch.Tensor) -> None:
    """buf [B, S_max, ...] <- value [B, 1, ...] at slot pos (device tensor, no host sync)."""
    buf.index_copy_(1, pos, value.to(buf.dtype))


def _visible(S: int, pos: torch.Tensor) -> torch.Tensor:
    """[1 or B, 1, S] bool: slots 0..pos of each row."""
    return (torch.arange(S, device=pos.device)[None, :] <= pos[:, None])[:, None]


def decode_dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, scale: float) -> torch.Tensor:
    """q [B,1,Hq,D] against the whole cache k/v [B,S_max,Hkv,D], keys 0..pos visible -> [B,1,Hq,D]."""
    return ops._attend(q, k, v, _visible(k.shape[1], pos), scale)


def decode_select(iq: torch.Tensor, iw: torch.Tensor, ik: torch.Tensor, pos: torch.Tensor,
                  topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The DSA selection of one query per row over index keys ik [B,S,d] (0..pos visible): slots idx [B,1,K] and
    keep [1 or B,K] (False past the visible count), K = min(topk, S)."""
    d = iq.shape[-1]
    S = ik.shape[1]
    logits = torch.einsum("bthd,bsd->bths", iq.float(), ik.float()).relu_()  # [B, 1, H, S]
    scores = torch.einsum("bths,bth->bts", logits, iw.float() * d**-0.5)
    scores = scores.masked_fill(~_visible(S, pos), float("-inf"))
    K = min(topk, S)
    # Masked slots score -inf and sort last; a stable sort breaks ties toward the lower key as the reference does.
    idx = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :K]
    keep = torch.arange(K, device=pos.device)[None, :] < (pos + 1).clamp(max=K)[:, None]  # [1 or B, K]
    return idx, keep


def decode_sparse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, iq: torch.Tensor, iw: torch.Tensor,
                  ik: torch.Tensor, pos: torch.Tensor, topk: int, scale: float) -> torch.Tensor:
    """DSA for one query: index scores over the whole index cache ik [B,S_max,d], top-k among 0..pos, attention."""
    B, S = q.shape[0], ik.shape[1]
    idx, keep = decode_select(iq, iw, ik, pos, topk)
    idx = torch.where(keep[:, None], idx, S)  # slot S = unused
    mask = torch.zeros(B, 1, S + 1, dtype=torch.bool, device=q.device).scatter_(2, idx, True)[..., :S]
    return ops._attend(q, k, v, mask, scale)
