"""The paged decode attention kernel (kernels/decode/paged.py) against its reference: rows of different lengths
reading scattered slots of one pool, slots outside each row's table NaN (never read), empty splits, GQA."""

from __future__ import annotations

import pytest
import torch
from conftest import REL_TOL, rel_rms

from keye_agent.model.kernels.decode.naive import paged_decode_attention_ref
from keye_agent.model.kernels.decode.paged import paged_decode_attention


@pytest.mark.parametrize("lengths,Hq,Hkv,D", [([1, 37, 70], 6, 2, 24), ([5], 4, 4, 32), ([64, 3], 8, 2, 16)])
def test_paged_decode_matches_reference(lengths, Hq, Hkv, D, dtype, device, poison):
    B, N = len(lengths), 200
    g = torch.Generator().manual_seed(sum(lengths))
    q = torch.randn(B, Hq, D, generator=g).to(device, dtype)
    k = torch.full((N, Hkv, D), float("nan"))
    v = torch.full((N, Hkv, D), float("nan"))
    S = max(lengths) + 5
    table = torch.zeros(B, S, dtype=torch.long)
    free = torch.randperm(N, generator=g)
    used = 0
    for b, n in enumerate(lengths):
        sl = free[used: used + n]
        used += n
        table[b, :n] = sl
        table[b, n:] = free[-1]  # past the length: a NaN slot, never read
        k[sl] = torch.randn(n, Hkv, D, generator=g)
        v[sl] = torch.randn(n, Hkv, D, generator=g)
    k, v, table = k.to(device, dtype), v.to(device, dtype), table.to(device)
    lens = torch.tensor(lengths, device=device)
    out = torch.empty(B, Hq, D, device=device, dtype=dtype)
    paged_decode_attention(q, k, v, table, lens, D**-0.5, out, nsplit=4, block_n=16)
    assert rel_rms(out, paged_decode_attention_ref(q, k, v, table, lens, D**-0.5)) < REL_TOL[dtype]


def test_paged_decode_checks_shapes(device):
    q = torch.zeros(2, 4, 8, device=device)
    k = torch.zeros(10, 2, 8, device=device)
    with pytest.raises(ValueError, match="shapes disagree"):
        paged_decode_attention(q, k, k, torch.zeros(3, 4, dtype=torch.long, device=device),
                               torch.ones(2, dtype=torch.long, device=device), 1.0, torch.empty_like(q))
    with pytest.raises(ValueError, match="expected q"):
        paged_decode_attention(q[0], k, k, torch.zeros(2, 4, dtype=torch.long, device=device),
                               torch.ones(2, dtype=torch.long, device=device), 1.0, torch.empty_like(q))


@pytest.mark.parametrize("sparse,topk", [(False, 2048), (True, 5)])
def test_batched_decode_step_with_the_kernel_equals_the_reference(sparse, topk, device):
    """decode_rows of the tiny model (rows of different lengths over one pool) through the paged kernel and
    through the gather + SDPA reference."""
    from keye_agent.model import KeyeConfig, build_model, ops
    from keye_agent.model.paged import PagePool
    from keye_agent.model.paged_forward import Segment, decode_rows, forward_packed, page_slots, paged_kernel

    cfg = KeyeConfig.from_name("tiny").replace(sa_config={"topk": topk})
    model = build_model(cfg, device, torch.float32, seed=3)
    model.set_sparse(sparse)
    pool = PagePool(cfg, 16, 4, device=device)
    lens = [9, 14, 3]
    pages = torch.arange(12, device=device).view(3, 4)
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        prompt = [torch.randint(0, 2048, (n,), generator=g) for n in lens]
        segs = [Segment(0, n, page_slots(pages[b], 4)[:n]) for b, n in enumerate(lens)]
        forward_packed(model, pool, torch.cat(prompt).to(device), segs, sparse)
        tokens = torch.tensor([5, 6, 7], device=device)
        pos = torch.tensor(lens, device=device)
        before = ops.get_backend()
        try:
            ops.set_backend("reference")
            assert paged_kernel(torch.device(device)) is None
            want = decode_rows(model, pool, tokens, pages, pos, sparse)
            ops.set_backend("triton")
            assert paged_kernel(torch.device(device)) is not None
            got = decode_rows(model, pool, tokens, pages, pos, sparse)
        finally:
            ops.set_backend(before)
    assert rel_rms(got, want) < 1e-5
