"""Triton index scores against the float32 reference (fresh random inputs, awkward sizes, NaN-poisoned outputs)."""

from __future__ import annotations

import pytest
import torch
from conftest import ON_GPU, REL_TOL, rel_rms

from keye_agent.model.kernels.indexer.naive import index_scores_ref
from keye_agent.model.kernels.indexer.scores import index_scores

# (B, T, H, d, start)
SHAPES = [(2, 5, 3, 20, 4), (1, 63, 4, 60, 0), (1, 9, 16, 64, 40), (2, 1, 16, 64, 77)]
# 16-row tiles: few queries of few heads (BLOCK_T * padded H = 16)
SHAPES += [(2, 3, 3, 20, 200), (1, 2, 4, 16, 40)]
if ON_GPU:
    SHAPES += [(1, 300, 16, 64, 2900), (2, 1, 16, 64, 70000)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_index_scores_matches_reference(shape, dtype, device, poison):
    B, T, H, d, start = shape
    S = start + T
    q = torch.randn(B, T, H, d, device=device).to(dtype)
    w = torch.randn(B, T, H, device=device).to(dtype)
    k = torch.randn(B, S, d, device=device).to(dtype)
    out = index_scores(q, w, k, start)
    ref = index_scores_ref(q, w, k, start)
    assert out.shape == (B, T, S) and out.dtype == torch.float32
    assert torch.equal(torch.isneginf(out), torch.isneginf(ref)), "causal -inf mask differs"
    finite = torch.isfinite(ref)
    # products of half inputs are exact in fp32: only the summation order differs
    assert rel_rms(out[finite], ref[finite]) < 1e-5


def test_index_scores_strided_key_cache(device, poison):
    """k sliced out of a larger preallocated cache is read in place."""
    cache = torch.randn(1, 50, 24, device=device)
    k = cache[:, :30, 2:22]
    q, w = torch.randn(1, 4, 2, 20, device=device), torch.randn(1, 4, 2, device=device)
    assert rel_rms(index_scores(q, w, k, 26).nan_to_num(neginf=0), index_scores_ref(q, w, k, 26).nan_to_num(neginf=0)) < REL_TOL[torch.float32]


def test_index_scores_rejects_bad_shapes(device):
    q, w, k = torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2), torch.randn(1, 10, 6)
    with pytest.raises(ValueError, match="k must be"):
        index_scores(q, w, k, 0)
    with pytest.raises(ValueError, match="start"):
        index_scores(q, w, torch.randn(1, 10, 8), 7)
