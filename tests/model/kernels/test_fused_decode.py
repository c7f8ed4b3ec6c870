"""The fused decode step (fused_decode.FusedDecode through DecodeGraph) against the regular cached forward pass,
on the tiny model: the kernels run under the Triton interpreter on the CPU (fp32), compiled on CUDA."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICE, ON_GPU

from keye_agent.model import build_model
from keye_agent.model.graph import DecodeGraph
from keye_agent.model.kernels.decode import attention as attn_mod
from keye_agent.model.kernels.decode import dsa as dsa_mod
from keye_agent.model.layers import RMSNorm
from tests.model.conftest import tiny_config


@pytest.fixture(autouse=True)
def _small_grids(monkeypatch):
    """Fewer programs per launch, so the interpreter stays quick (the split logic is the same)."""
    if not ON_GPU:
        monkeypatch.setitem(attn_mod.DECODE_ATTN_CONFIG, "nsplit", 4)
        for key, value in (("nprog", 4), ("topk_split", 4), ("attn_nsplit", 2), ("block_s", 16)):
            monkeypatch.setitem(dsa_mod.DSA_DECODE_CONFIG, key, value)


def _model(seed: int, topk: int):
    model = build_model(tiny_config(sa_config={"topk": topk}), device=DEVICE, dtype=torch.float32, seed=seed)
    g = torch.Generator(device=DEVICE).manual_seed(seed + 1)
    with torch.no_grad():  # norms away from 1, so a miswired norm cannot hide
        for m in model.modules():
            if isinstance(m, (RMSNorm, torch.nn.LayerNorm)):
                m.weight.add_(0.3 * torch.randn(m.weight.shape, generator=g, device=DEVICE))
                if getattr(m, "bias", None) is not None:
                    m.bias.add_(0.1 * torch.randn(m.bias.shape, generator=g, device=DEVICE))
    return model


@pytest.mark.parametrize("sparse,topk,batch", [(False, 2048, 2), (True, 3, 1), (True, 5, 2)])
def test_fused_step_equals_regular_decode(sparse, topk, batch) -> None:
    model = _model(topk + batch, topk)
    model.set_sparse(sparse)
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(topk)
    prompt = torch.randint(0, V, (batch, 6), generator=g).to(DEVICE)
    steps = torch.randint(0, V, (batch, 3), generator=g).to(DEVICE)
    with torch.inference_mode():
        ref_cache, cache = model.new_cache(batch, 16), model.new_cache(batch, 16)
        model(prompt, cache=ref_cache)
        model(prompt, cache=cache)
    step = DecodeGraph(model, cache, fused=True)
    assert step.fused is not None
    with torch.inference_mode():
        for j in range(steps.shape[1]):
            tok = steps[:, j: j + 1]
            want = model(tok, cache=ref_cache)
            got = step(tok)
            assert got.shape == want.shape and torch.isfinite(got).all()
            rel = float((got - want).norm() / want.norm())
            assert rel < 1e-4, f"step {j}: relative logit error {rel:.2e}"
    n = cache.length
    assert n == ref_cache.length == 9
    assert torch.allclose(cache.k[:, :, :n], ref_cache.k[:, :, :n], atol=1e-5)
    assert torch.allclose(cache.v[:, :, :n], ref_cache.v[:, :, :n], atol=1e-6)
    if sparse:
        assert torch.allclose(cache.index_k[:, :, :n], ref_cache.index_k[:, :, :n], atol=1e-5)


def test_fusing_the_qkv_weights_keeps_the_regular_forward() -> None:
    model = _model(3, 4)
    ids = torch.randint(0, model.config.vocab_size, (1, 7), generator=torch.Generator().manual_seed(0)).to(DEVICE)
    with torch.inference_mode():
        before = model(ids)
    attn = model.model.layers[0].self_attn
    from keye_agent.model.fused_decode import fuse_qkv_weights

    buf = fuse_qkv_weights(attn)
    assert fuse_qkv_weights(attn) is buf  # done once
    assert attn.k_proj.weight.data_ptr() == buf[attn.q_proj.weight.shape[0]:].data_ptr()
    with torch.inference_mode():
        assert torch.equal(model(ids), before)
    with torch.no_grad():
        attn.v_proj.weight.copy_(torch.randn_like(attn.v_proj.weight))  # a loader's in-place copy lands in buf
    n0 = attn.q_proj.weight.shape[0] + attn.k_proj.weight.shape[0]
    assert torch.equal(buf[n0: n0 + attn.v_proj.weight.shape[0]], attn.v_proj.weight)
