"""Triton radix top-k against the reference, with the issue's acceptance rule (ties may break either way)."""

from __future__ import annotations

import pytest
import torch
from conftest import ON_GPU, check_selection

from keye_agent.model.kernels.topk.naive import topk_select_ref
from keye_agent.model.kernels.topk.radix import topk_select

# (B, T, S_extra, start, topk): S = start + T + S_extra is allowed (keys past the last query are never visible)
SHAPES = [(2, 6, 0, 14, 5), (1, 63, 0, 21, 16), (1, 3, 0, 2, 9), (2, 4, 3, 90, 33)]
if ON_GPU:
    SHAPES += [(1, 64, 0, 5000, 2048), (1, 1, 0, 131071, 2048)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("pattern", ["normal", "ties", "negative"])
def test_topk_select_acceptance(shape, pattern, device, poison):
    B, T, extra, start, topk = shape
    S = start + T + extra
    scores = torch.randn(B, T, S, device=device)
    if pattern == "ties":
        scores = torch.round(scores * 2) / 2  # few distinct values: many ties at the k-th place
    elif pattern == "negative":
        scores = -scores.abs() - 1e-3
    out = topk_select(scores, start, topk)
    assert out.dtype == torch.int32
    check_selection(out, scores, start, topk, rel_tol=0.0)
    if pattern == "normal":
        # continuous random scores have no ties: the set is exactly the reference's
        assert torch.equal(out.cpu(), topk_select_ref(scores, start, topk).cpu())


def test_topk_select_all_when_range_short(device, poison):
    scores = torch.randn(1, 4, 10, device=device)
    out = topk_select(scores, 3, 8).cpu()
    assert out[0, 0].tolist() == [0, 1, 2, 3, -1, -1, -1, -1]
    assert out[0, 3].tolist() == list(range(7)) + [-1]


def test_topk_select_rejects_bad_input(device):
    with pytest.raises(ValueError, match="topk"):
        topk_select(torch.randn(1, 2, 4), 2, 0)
    with pytest.raises(ValueError, match="scores must be"):
        topk_select(torch.randn(2, 4), 0, 2)
