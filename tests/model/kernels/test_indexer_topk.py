"""Streamed indexer + top-k against the reference scores, with the issue's acceptance rule.

The kernel rounds scores to float16 before selecting (indexer/streamed.py), so the stated tolerance is 2**-10
relative to the k-th score (plus 1e-5 of the row's largest score for summation order).
"""

from __future__ import annotations

import pytest
import torch
from conftest import ON_GPU, check_selection

from keye_agent.model.kernels.indexer.naive import index_scores_ref
from keye_agent.model.kernels.indexer.streamed import indexer_topk

# (B, T, H, d, start, topk, chunk_bytes)
SHAPES = [(2, 7, 3, 20, 12, 6, 1 << 30), (1, 63, 4, 60, 20, 16, 2000), (1, 5, 16, 64, 0, 3, 1 << 30)]
# decode-sized calls take the split top-k (topk/split.py)
SHAPES += [(1, 1, 16, 64, 700, 32, 1 << 30), (2, 3, 3, 20, 200, 9, 1 << 30), (1, 2, 4, 16, 40, 9, 1 << 30)]
if ON_GPU:
    SHAPES += [(1, 200, 16, 64, 4000, 2048, 1 << 22), (1, 1, 16, 64, 100000, 2048, 1 << 30), (4, 2, 16, 64, 30000, 2048, 1 << 30)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_indexer_topk_acceptance(shape, dtype, device, poison):
    B, T, H, d, start, topk, chunk_bytes = shape
    S = start + T
    q = torch.randn(B, T, H, d, device=device).to(dtype)
    w = torch.randn(B, T, H, device=device).to(dtype)
    k = torch.randn(B, S, d, device=device).to(dtype)
    out = indexer_topk(q, w, k, start, topk, chunk_bytes=chunk_bytes)
    check_selection(out, index_scores_ref(q, w, k, start), start, topk, rel_tol=2.0**-10)


def test_indexer_topk_short_context_selects_everything(device, poison):
    q, w, k = torch.randn(1, 3, 2, 8, device=device), torch.randn(1, 3, 2, device=device), torch.randn(1, 5, 8, device=device)
    out = indexer_topk(q, w, k, 2, 16).cpu()
    assert out.shape == (1, 3, 5)
    assert out[0, 2].tolist() == [0, 1, 2, 3, 4]
    assert out[0, 0].tolist() == [0, 1, 2, -1, -1]


@pytest.mark.parametrize("shape", [(1, 1, 4, 16, 600, 40), (2, 3, 16, 64, 300, 20)], ids=str)
def test_indexer_topk_many_ties(shape, dtype, device, poison):
    """Every key appears 4 times, so the k-th score is tied across several keys: exactly k must still be chosen."""
    B, T, H, d, start, topk = shape
    S = start + T
    q = torch.randn(B, T, H, d, device=device).to(dtype)
    w = torch.randn(B, T, H, device=device).to(dtype)
    k = torch.randn(B, S // 4 + 1, d, device=device).to(dtype).repeat_interleave(4, dim=1)[:, :S].contiguous()
    out = indexer_topk(q, w, k, start, topk)
    check_selection(out, index_scores_ref(q, w, k, start), start, topk, rel_tol=2.0**-10)
