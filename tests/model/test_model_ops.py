"""The reference ops behind the dispatch point, and the dispatch registry itself."""

from __future__ import annotations

import pytest
import torch

from keye_agent.model import ops
from keye_agent.model.rope import apply_rope, rope_cos_sin


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_index_scores_formula_and_mask():
    B, T, S, H, d, start = 2, 3, 7, 4, 8, 4
    q, w, k = _rand(B, T, H, d, seed=1), _rand(B, T, H, seed=2), _rand(B, S, d, seed=3)
    out = ops.index_scores(q, w, k, start)
    assert out.dtype == torch.float32 and out.shape == (B, T, S)
    for b in range(B):
        for t in range(T):
            for s in range(S):
                if s > start + t:
                    assert out[b, t, s] == float("-inf")
                else:
                    want = sum(float(w[b, t, j]) * d**-0.5 * max(0.0, float(q[b, t, j] @ k[b, s])) for j in range(H))
                    assert abs(float(out[b, t, s]) - want) < 1e-5


def test_topk_select_pads_and_selects_all_short_ranges():
    B, T, S, start, topk = 1, 4, 6, 2, 4
    scores = _rand(B, T, S, seed=4)
    scores = scores.masked_fill(torch.arange(S)[None, :] > torch.arange(T)[:, None] + start, float("-inf"))
    idx = ops.topk_select(scores, start, topk)
    assert idx.dtype == torch.int32 and idx.shape == (B, T, topk)
    for t in range(T):
        n = min(topk, start + t + 1)
        chosen = idx[0, t, :n].tolist()
        assert (idx[0, t, n:] == -1).all()
        if start + t + 1 <= topk:
            assert sorted(chosen) == list(range(start + t + 1))
        else:
            best = torch.topk(scores[0, t, : start + t + 1], n).indices.tolist()
            assert sorted(chosen) == sorted(best)
    # K is capped by S; ties break toward the lower key index.
    idx = ops.topk_select(torch.zeros(1, 1, 5), 4, 9)
    assert idx.shape == (1, 1, 5) and idx[0, 0].tolist() == [0, 1, 2, 3, 4]
    idx = ops.topk_select(torch.zeros(1, 1, 5), 4, 2)
    assert idx[0, 0].tolist() == [0, 1]


def test_sparse_attention_matches_gather_loop_on_cache_views():
    B, T, S_max, Hq, Hkv, D, K = 2, 3, 12, 4, 2, 8, 4
    cache_k, cache_v = _rand(B, S_max, Hkv, D, seed=5), _rand(B, S_max, Hkv, D, seed=6)
    S = 9
    k, v = cache_k[:, :S], cache_v[:, :S]  # views, as the model passes them
    q = _rand(B, T, Hq, D, seed=7)
    g = torch.Generator().manual_seed(8)
    idx = torch.stack([torch.stack([torch.randperm(S, generator=g)[:K] for _ in range(T)]) for _ in range(B)])
    idx = idx.to(torch.int32)
    idx[0, 1, 2:] = -1  # unused slots
    out = ops.sparse_attention(q, k, v, idx, 0.3)
    for b in range(B):
        for t in range(T):
            keys = sorted({int(s) for s in idx[b, t] if s >= 0})
            for h in range(Hq):
                g = h // (Hq // Hkv)
                logits = torch.stack([q[b, t, h] @ k[b, s, g] * 0.3 for s in keys])
                want = (torch.softmax(logits, 0)[:, None] * torch.stack([v[b, s, g] for s in keys])).sum(0)
                torch.testing.assert_close(out[b, t, h], want, rtol=1e-5, atol=1e-5)


def test_dense_attention_equals_sparse_with_all_keys():
    B, T, S, Hq, Hkv, D, start = 1, 3, 8, 4, 1, 8, 5
    q, k, v = _rand(B, T, Hq, D, seed=9), _rand(B, S, Hkv, D, seed=10), _rand(B, S, Hkv, D, seed=11)
    idx = torch.full((B, T, S), -1, dtype=torch.int32)
    for t in range(T):
        idx[0, t, : start + t + 1] = torch.arange(start + t + 1)
    torch.testing.assert_close(ops.dense_attention(q, k, v, start, 0.25),
                               ops.sparse_attention(q, k, v, idx, 0.25), rtol=1e-5, atol=1e-5)


def test_ops_reject_bad_shapes_quoting_them():
    q = torch.zeros(1, 2, 4, 8)
    with pytest.raises(ValueError, match=r"dense_attention.*\(1, 2, 4, 8\)"):
        ops.dense_attention(q, torch.zeros(1, 5, 3, 8), torch.zeros(1, 5, 3, 8), 0, 1.0)
    with pytest.raises(ValueError, match="start 4"):
        ops.dense_attention(q, torch.zeros(1, 5, 2, 8), torch.zeros(1, 5, 2, 8), 4, 1.0)
    with pytest.raises(ValueError, match="int32"):
        ops.sparse_attention(q, torch.zeros(1, 5, 2, 8), torch.zeros(1, 5, 2, 8), torch.zeros(1, 2, 3), 1.0)
    with pytest.raises(ValueError, match="topk must be >= 1"):
        ops.topk_select(torch.zeros(1, 1, 3), 2, 0)


def test_registry_dispatch_and_backend_choice(monkeypatch):
    # A private copy of the registry, and no kernel import, so the real registrations are untouched.
    monkeypatch.setattr(ops, "_impls", {op: dict(fns) for op, fns in ops._impls.items()})
    monkeypatch.setattr(ops, "_kernels_imported", True)
    ops._impls["index_scores"].pop("triton", None)
    calls = []

    def fake_dense(q, k, v, start, scale):
        calls.append(start)
        return torch.zeros_like(q)

    ops.register_impl("dense_attention", "triton", fake_dense)
    q, k = torch.ones(1, 1, 2, 4), torch.ones(1, 3, 1, 4)
    try:
        ops.set_backend("auto")  # CPU tensors: auto keeps the reference
        assert ops.dense_attention(q, k, k, 2, 1.0).abs().sum() > 0 and calls == []
        ops.set_backend("triton")
        assert ops.get_backend() == "triton"
        assert ops.dense_attention(q, k, k, 2, 1.0).abs().sum() == 0 and calls == [2]
        with pytest.raises(NotImplementedError, match="index_scores"):
            ops.index_scores(torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1), torch.zeros(1, 1, 2), 0)
        ops.set_backend("reference")
        assert ops.dense_attention(q, k, k, 2, 1.0).abs().sum() > 0 and calls == [2]
    finally:
        ops.set_backend("auto")
    with pytest.raises(ValueError, match="unknown op_name"):
        ops.register_impl("nope", "triton", fake_dense)
    with pytest.raises(ValueError, match="set_backend"):
        ops.set_backend("cuda")


def test_mrope_sections_take_their_own_position_stream():
    D, theta, section = 16, 1e4, [2, 3, 3]
    pos = torch.tensor([[[5, 9]], [[1, 2]], [[7, 3]]])  # [3, B=1, T=2]: distinct t, h, w
    cos, sin = rope_cos_sin(pos, D, theta, section)
    stream = [0] * 2 + [1] * 3 + [2] * 3
    for t in range(2):
        for i in range(D // 2):
            a = float(pos[stream[i], 0, t]) * theta ** (-2 * i / D)
            assert abs(float(cos[0, t, i]) - torch.tensor(a).cos().item()) < 1e-6
            assert abs(float(sin[0, t, i + D // 2]) - torch.tensor(a).sin().item()) < 1e-6
    x = torch.randn(1, 2, 3, D)
    y = apply_rope(x, cos, sin)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))  # a rotation keeps the norm
