"""The sync-free MoE expert paths (grouped GEMM, gathered bmm) equal the original per-expert loop, in float32."""

from __future__ import annotations

import pytest
import torch

from keye_agent.model import KeyeConfig, moe
from keye_agent.model.layers import SparseMoe

IMPLS = ["grouped", "gather"] if hasattr(torch, "_grouped_mm") else ["gather"]


def _inputs(n: int, hidden: int, inter: int, n_experts: int, k: int, seed: int, only: list[int] | None = None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, hidden, generator=g)
    gate_up = torch.randn(n_experts, hidden, 2 * inter, generator=g) * hidden**-0.5
    down = torch.randn(n_experts, inter, hidden, generator=g) * inter**-0.5
    pool = torch.tensor(only) if only is not None else torch.arange(n_experts)
    # k distinct experts per token, drawn from pool (few experts -> many rows per expert, most experts idle).
    pick = torch.stack([torch.randperm(len(pool), generator=g)[:k] for _ in range(n)])
    chosen = pool[pick]
    weights = torch.softmax(torch.randn(n, k, generator=g), -1)
    return x, chosen, weights, gate_up, down


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n,hidden,inter,n_experts,k,only", [
    (1, 32, 16, 8, 2, None),            # one decode token
    (3, 24, 8, 16, 4, None),            # a few tokens
    (37, 16, 24, 8, 2, None),           # prefill-like: every expert busy
    (20, 32, 16, 64, 3, [5, 9, 41]),    # all tokens on the same 3 of 64 experts (61 idle groups)
    (9, 16, 8, 128, 8, list(range(120, 128))),  # the last experts only (empty groups before them)
])
def test_new_paths_equal_loop(impl: str, n, hidden, inter, n_experts, k, only) -> None:
    x, chosen, weights, gate_up, down = _inputs(n, hidden, inter, n_experts, k, seed=n * 7 + k, only=only)
    ref = moe.experts_loop(x, chosen, weights, gate_up, down)
    fn = {"grouped": moe.experts_grouped, "gather": moe.experts_gather}[impl]
    got = fn(x, chosen, weights, gate_up, down)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert torch.isfinite(got).all()
    rel = float((got - ref).norm() / ref.norm())
    assert rel < 1e-5, f"{impl} vs loop: relative error {rel:.2e}"
    # Independent check of one token against the definition.
    j = n - 1
    want = torch.zeros(hidden)
    for s in range(k):
        e = int(chosen[j, s])
        h = x[j] @ gate_up[e]
        want += weights[j, s] * ((torch.nn.functional.silu(h[:inter]) * h[inter:]) @ down[e])
    assert torch.allclose(got[j], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["auto", *IMPLS])
def test_sparse_moe_module_same_with_every_impl(impl: str) -> None:
    """The whole SparseMoe (router included) gives the loop's output whichever implementation runs."""
    cfg = KeyeConfig.from_name("tiny")
    layer = SparseMoe(cfg).requires_grad_(False)
    g = torch.Generator().manual_seed(3)
    for p in layer.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    x = torch.randn(2, 5, cfg.hidden_size, generator=g)
    try:
        moe.set_moe_impl("loop")
        ref = layer(x)
        moe.set_moe_impl(impl)
        got = layer(x)
    finally:
        moe.set_moe_impl("auto")
    assert got.shape == x.shape
    assert float((got - ref).norm() / ref.norm()) < 1e-5


def test_set_moe_impl_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        moe.set_moe_impl("fast")
    assert moe.get_moe_impl() == "auto"


def test_forced_gather_leaves_large_batches_to_auto() -> None:
    """set_moe_impl("gather") must not gather expert weights for a prefill-sized batch (it would need gigabytes)."""
    x, chosen, weights, gate_up, down = _inputs(40, 16, 8, 8, 2, seed=1)  # 80 rows > GATHER_MAX_ROWS
    ref = moe.experts_loop(x, chosen, weights, gate_up, down)
    calls = []
    original = moe._IMPLS["gather"]
    moe._IMPLS["gather"] = lambda *a: calls.append(1) or original(*a)
    try:
        moe.set_moe_impl("gather")
        got = moe.experts(x, chosen, weights, gate_up, down)
        assert calls == []
        moe.experts(x[:2], chosen[:2], weights[:2], gate_up, down)  # 4 rows: gathered
        assert calls == [1]
    finally:
        moe._IMPLS["gather"] = original
        moe.set_moe_impl("auto")
    assert float((got - ref).norm() / ref.norm()) < 1e-5
