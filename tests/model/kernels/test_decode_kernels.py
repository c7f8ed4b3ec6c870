"""Kernels of the fused decode step against their PyTorch references (kernels/decode/naive.py), fresh random
inputs at awkward shapes, outputs NaN-poisoned before the kernels write (the ``poison`` fixture)."""

from __future__ import annotations

import pytest
import torch
from conftest import INT_POISON, REL_TOL, check_selection, rel_rms

from keye_agent.model.kernels.decode import dsa as dsa_mod
from keye_agent.model.kernels.decode.attention import decode_attention
from keye_agent.model.kernels.decode.dsa import WS_STRIDE, dsa_decode
from keye_agent.model.kernels.decode.moe import moe_decode
from keye_agent.model.kernels.decode.naive import (
    add_rmsnorm_ref,
    decode_attention_ref,
    moe_decode_ref,
    norm_rope_ref,
)
from keye_agent.model.kernels.decode.norms import add_rmsnorm, qkv_post
from keye_agent.model.kernels.indexer.naive import index_scores_ref
from keye_agent.model.kernels.sparse_attention.naive import sparse_attention_ref


def _pos(p: int, device: str) -> torch.Tensor:
    return torch.tensor([p], dtype=torch.long, device=device)


@pytest.mark.parametrize("B,H,P,E", [(1, 200, 0, 0), (3, 200, 3, 20), (2, 64, 8, 128)])
def test_add_rmsnorm(B, H, P, E, dtype, device, poison):
    x = torch.randn(B, H, device=device).to(dtype)
    deltas = torch.randn(P, B, H, device=device) if P else None
    w = (1 + 0.3 * torch.randn(H, device=device)).to(dtype)
    router = torch.randn(E, H, device=device).to(dtype) if E else None
    out, res = torch.empty(B, H, device=device, dtype=dtype), torch.empty(B, H, device=device)
    logits = torch.empty(B, E, device=device) if E else None
    add_rmsnorm(x, deltas, w, 1e-6, out, res=res, router=router, logits=logits)
    want_res, want_out, want_logits = add_rmsnorm_ref(x, deltas, w, 1e-6, router)
    assert rel_rms(res, want_res) < 1e-6
    assert rel_rms(out, want_out) < REL_TOL[dtype]
    if E:
        assert rel_rms(logits, want_logits) < REL_TOL[dtype]


@pytest.mark.parametrize("index", [False, True])
def test_qkv_post_norms_rotates_and_writes_the_cache_slot(index, dtype, device, poison):
    B, Hq, Hkv, D, Hi, Di, S, pos = 2, 4, 2, 32, 3, 16, 9, 5
    n = Hq * D + 2 * Hkv * D + (Hi * Di + Hi + Di if index else 0)
    qkv = torch.randn(B, n, device=device).to(dtype)
    qn, kn = (1 + 0.3 * torch.randn(2, D, device=device)).to(dtype)
    cos, sin = torch.randn(2, B, D, device=device)
    q_out = torch.empty(B, Hq, D, device=device, dtype=dtype)
    k_cache, v_cache = torch.randn(2, B, S, Hkv, D, device=device).to(dtype)
    k_before, v_before = k_cache.clone(), v_cache.clone()
    args = None
    if index:
        iqn, ikw, ikb = (1 + 0.3 * torch.randn(3, Di, device=device)).to(dtype)
        icos, isin = torch.randn(2, B, Di, device=device)
        iq_out = torch.empty(B, Hi, Di, device=device, dtype=dtype)
        ik_cache = torch.randn(B, S, Di, device=device).to(dtype)
        ik_before = ik_cache.clone()
        ws = torch.full((B, WS_STRIDE), 5, dtype=torch.int32, device=device)
        args = (iqn, ikw, ikb, 1e-6, icos, isin, iq_out, ik_cache, ws)
    qkv_post(qkv, _pos(pos, device), qn, kn, 1e-6, cos, sin, q_out, k_cache, v_cache, args)
    tol = REL_TOL[dtype]
    q, k, v = qkv[:, : Hq * D], qkv[:, Hq * D: (Hq + Hkv) * D], qkv[:, (Hq + Hkv) * D: (Hq + 2 * Hkv) * D]
    assert rel_rms(q_out, norm_rope_ref(q.view(B, Hq, D), qn, 1e-6, cos, sin)) < tol
    assert rel_rms(k_cache[:, pos], norm_rope_ref(k.view(B, Hkv, D), kn, 1e-6, cos, sin)) < tol
    assert torch.equal(v_cache[:, pos], v.view(B, Hkv, D))
    others = [s for s in range(S) if s != pos]
    assert torch.equal(k_cache[:, others], k_before[:, others]) and torch.equal(v_cache[:, others], v_before[:, others])
    if index:
        base = (Hq + 2 * Hkv) * D
        iq, ik = qkv[:, base: base + Hi * Di], qkv[:, base + Hi * Di + Hi:]
        assert rel_rms(iq_out, norm_rope_ref(iq.view(B, Hi, Di), iqn, 1e-6, icos, isin)) < tol
        assert rel_rms(ik_cache[:, pos], norm_rope_ref(ik.view(B, 1, Di), ikw, 1e-6, icos, isin, ikb)[:, 0]) < tol
        assert torch.equal(ik_cache[:, others], ik_before[:, others])
        assert int(ws.abs().sum()) == 0


@pytest.mark.parametrize("pos", [0, 37, 299])
def test_decode_attention_reads_only_the_filled_part(pos, dtype, device, poison):
    B, Hq, Hkv, D, S = 2, 6, 2, 24, 300
    q = torch.randn(B, Hq, D, device=device).to(dtype)
    k, v = torch.randn(2, B, S, Hkv, D, device=device).to(dtype)
    k[:, pos + 1:] = float("nan")  # slots past pos must not be read
    v[:, pos + 1:] = float("nan")
    out = torch.empty(B, Hq, D, device=device, dtype=dtype)
    decode_attention(q, k, v, _pos(pos, device), D**-0.5, out, nsplit=4, block_n=16)
    assert rel_rms(out, decode_attention_ref(q, k, v, pos, D**-0.5)) < REL_TOL[dtype]


@pytest.mark.parametrize("B,H,E,NI,topk,norm", [(1, 96, 12, 40, 3, True), (3, 80, 16, 24, 4, False)])
def test_moe_decode_matches_the_expert_loop(B, H, E, NI, topk, norm, dtype, device, poison):
    x = torch.randn(B, H, device=device).to(dtype)
    logits = torch.randn(B, E, device=device)
    gate_up = (torch.randn(E, H, 2 * NI, device=device) / H**0.5).to(dtype)
    down = (torch.randn(E, NI, H, device=device) / NI**0.5).to(dtype)
    partial = torch.empty(topk, B, H, device=device)
    moe_decode(x, logits, gate_up, down, topk, norm, partial)
    assert rel_rms(partial.sum(0), moe_decode_ref(x, logits, gate_up, down, topk, norm)) < REL_TOL[dtype]


@pytest.mark.parametrize("B,pos,topk", [(1, 600, 32), (2, 211, 40), (1, 20, 32)])
def test_dsa_decode_selects_and_attends(B, pos, topk, dtype, device, poison, monkeypatch):
    monkeypatch.setitem(dsa_mod.DSA_DECODE_CONFIG, "nprog", 8)
    monkeypatch.setitem(dsa_mod.DSA_DECODE_CONFIG, "topk_split", 4)
    monkeypatch.setitem(dsa_mod.DSA_DECODE_CONFIG, "block_s", 32)
    Hq, Hkv, D, Hi, Di, S = 4, 2, 32, 4, 16, 700
    q = torch.randn(B, 1, Hq, D, device=device).to(dtype)
    k, v = torch.randn(2, B, S, Hkv, D, device=device).to(dtype)
    iq = torch.randn(B, Hi, Di, device=device).to(dtype)
    iw_full = torch.randn(B, Hi + 3, device=device).to(dtype)
    iw = iw_full[:, 1: Hi + 1]  # a strided view, as in the fused qkv buffer
    ik = torch.randn(B, S, Di, device=device).to(dtype)
    ik[:, pos + 1:] = float("nan")  # past the filled part: never read
    out = torch.empty(B, 1, Hq, D, device=device, dtype=dtype)
    scores = torch.empty(B, 1, S, device=device, dtype=torch.float16)
    ws = torch.zeros(B, WS_STRIDE, dtype=torch.int32, device=device)
    idx = torch.full((B, 1, min(topk, S)), INT_POISON, dtype=torch.int32, device=device)
    dsa_decode(q, k, v, iq, iw, ik, _pos(pos, device), topk, D**-0.5, out, scores, ws, idx)
    if pos + 1 <= topk:  # every filled key, in order, then -1
        want = torch.arange(topk, device=device, dtype=torch.int32).masked_fill(torch.arange(topk, device=device) > pos, -1)
        assert torch.equal(idx, want.expand(B, 1, topk))
    else:
        ref_scores = index_scores_ref(iq[:, None], iw[:, None], ik[:, : pos + 1], pos)
        check_selection(idx, ref_scores, pos, topk, rel_tol=2.0**-10)
    assert rel_rms(out, sparse_attention_ref(q, k, v, idx, D**-0.5)) < REL_TOL[dtype]
