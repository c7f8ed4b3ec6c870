"""Triton sparse GQA attention (decode split, per-query gather, block-union) against the float32 reference."""

from __future__ import annotations

import pytest
import torch
from conftest import ON_GPU, REL_TOL, rel_rms

from keye_agent.model.kernels import OPS, register_all
from keye_agent.model.kernels.sparse_attention.api import sparse_attention
from keye_agent.model.kernels.sparse_attention.naive import sparse_attention_ref

# (B, T, Hq, Hkv, D, start, K)
SHAPES = [(2, 7, 6, 2, 24, 23, 9), (1, 21, 8, 2, 60, 17, 16), (1, 1, 32, 4, 128, 300, 64)]
if ON_GPU:
    SHAPES += [(1, 257, 32, 4, 128, 3000, 2048), (2, 1, 32, 4, 128, 9000, 2048)]


def make_idx(B: int, T: int, start: int, K: int, pattern: str, device: str) -> torch.Tensor:
    """Causal index sets: query t picks min(K, start+t+1) keys <= start+t, -1 after them.

    "random": each query draws its own set; "shared": each block of 16 queries shares one set drawn from the
    first query's causal range; "holes": random with -1 scattered inside the row too.
    """
    idx = torch.full((B, T, K), -1, dtype=torch.int32)
    for b in range(B):
        for t in range(T):
            src = t - t % 16 if pattern == "shared" else t
            visible = start + src + 1
            n = min(K, visible)
            if pattern != "shared" or t == src:
                idx[b, t, :n] = torch.randperm(visible)[:n].int()
            else:
                idx[b, t] = idx[b, src]
            if pattern == "holes":
                idx[b, t] = idx[b, t][torch.randperm(K)]
    return idx.to(device)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("path", ["per_query", "union"])
@pytest.mark.parametrize("pattern", ["random", "shared", "holes"])
def test_sparse_attention_matches_reference(shape, path, pattern, dtype, device, poison):
    B, T, Hq, Hkv, D, start, K = shape
    S = start + T
    # k and v are strided views of one preallocated cache [B, S_max, Hkv, 2, D]
    cache = torch.randn(B, S + 5, Hkv, 2, D, device=device).to(dtype)
    k, v = cache[:, :S, :, 0], cache[:, :S, :, 1]
    q = torch.randn(B, T, Hq, D, device=device).to(dtype)
    idx = make_idx(B, T, start, K, pattern, device)
    scale = D**-0.5
    out = sparse_attention(q, k, v, idx, scale, path=path)
    ref = sparse_attention_ref(q, k, v, idx, scale)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert rel_rms(out, ref) < REL_TOL[dtype]


@pytest.mark.parametrize("pattern", ["random", "shared"])
def test_sparse_attention_auto_path(pattern, device, poison):
    """The automatic choice (union for shared sets, per-query gather for random ones) gives the same result."""
    B, T, Hq, Hkv, D, start, K = SHAPES[0]
    S = start + T
    k, v = (torch.randn(B, S, Hkv, D, device=device) for _ in range(2))
    q = torch.randn(B, T, Hq, D, device=device)
    idx = make_idx(B, T, start, K, pattern, device)
    out = sparse_attention(q, k, v, idx, 0.2)
    assert rel_rms(out, sparse_attention_ref(q, k, v, idx, 0.2)) < REL_TOL[torch.float32]


def test_sparse_attention_rejects_bad_input(device):
    q, kv = torch.randn(1, 2, 4, 8), torch.randn(1, 5, 2, 8)
    with pytest.raises(ValueError, match="int32"):
        sparse_attention(q, kv, kv, torch.zeros(1, 2, 3, dtype=torch.int64), 1.0)
    with pytest.raises(ValueError, match="multiple"):
        sparse_attention(torch.randn(1, 2, 3, 8), kv, kv, torch.zeros(1, 2, 3, dtype=torch.int32), 1.0)


def test_register_all_registers_every_op():
    seen = {}
    assert register_all(lambda name, backend, fn: seen.setdefault((name, backend), fn))
    assert sorted(name for name, _ in seen) == sorted(OPS)
    assert {backend for _, backend in seen} == {"triton"}
