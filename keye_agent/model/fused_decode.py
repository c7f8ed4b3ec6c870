"""The fused one-token decode step: about ten kernels per layer, position read from device memory, length-aware.

Per layer (``kernels/decode``): residual add (summing the previous MoE's per-slot partials) + RMSNorm; one GEMV
over q, k, v (and the indexer's q, gate and key) from one fused weight; per-head QK-norm + RoPE writing k, v (and
the index key) into the cache at ``pos``; attention over slots 0..pos only (dense split decode, or DSA: index
scores, split top-k, sparse attention); o_proj; residual add + RMSNorm + router logits in one launch; the fused MoE
(routing + gate_up + SiLU-mul, then down into per-slot partials). It computes what ``KeyeForCausalLM.forward``
computes for one cached token (the residual stream is kept in float32; the DSA index scores are rounded to
float16 before the top-k, as in kernels/indexer/streamed.py).

    step = FusedDecode(model, cache)
    logits = step(tokens, pos)        # tokens [B, 1] int64, pos [1] int64 on the device -> [B, 1, V] float32

Building a step fuses each layer's q/k/v (and indexer) projection weights into one buffer in place: the modules'
weights become row slices of it (the regular forward runs on them unchanged; a loader's in-place copy still works).
``graph.DecodeGraph`` captures this step as a CUDA graph on CUDA. Needs triton (CUDA, or TRITON_INTERPRET=1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from keye_agent.model.cache import StaticCache
from keye_agent.model.layers import Attention
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.rope import rope_cos_sin

__all__ = ["FusedDecode", "available", "fuse_qkv_weights"]


def available() -> bool:
    """True when the decode kernels import (triton present)."""
    try:
        import keye_agent.model.kernels.decode.dsa  # noqa: F401
        import keye_agent.model.kernels.decode.moe  # noqa: F401
    except ImportError:
        return False
    return True


@torch.inference_mode(False)
@torch.no_grad()
def fuse_qkv_weights(attn: Attention) -> torch.Tensor:
    """One [N, hidden] buffer holding q, k, v (then the indexer's q+gate and key) projection weights, row-stacked;
    the modules' weights become views of it (done once; redone if a weight was replaced since)."""
    weights = [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]
    if attn.sa_indexer is not None:
        weights += [attn.sa_indexer.q_proj.weight, attn.sa_indexer.k_proj.weight]
    buf = getattr(attn, "_fused_qkv", None)
    if buf is not None:
        offset = 0
        for w in weights:
            if w.data_ptr() != buf[offset:].data_ptr() or w.shape[1] != buf.shape[1]:
                break
            offset += w.shape[0]
        else:
            if offset == buf.shape[0]:
                return buf
    buf = torch.cat([w.detach() for w in weights], 0)
    offset = 0
    for w in weights:
        n = w.shape[0]
        w.data = buf[offset: offset + n]
        offset += n
    attn._fused_qkv = buf
    return buf


class FusedDecode:
    """The fused decode step of ``model`` over ``cache`` (module docstring); holds its work buffers."""

    def __init__(self, model: KeyeForCausalLM, cache: StaticCache) -> None:
        from keye_agent.model.kernels.decode.dsa import WS_STRIDE

        cfg = model.config
        w = model.model.embed_tokens.weight
        if cache.k.dtype != w.dtype or cache.k.device != w.device:
            raise ValueError(f"FusedDecode: cache is {cache.k.dtype} on {cache.k.device}, model {w.dtype} on "
                             f"{w.device}")
        self.model, self.cache, self.cfg = model, cache, cfg
        B, dev, dt = cache.batch_size, w.device, w.dtype
        self.qkv = [fuse_qkv_weights(layer.self_attn) for layer in model.model.layers]
        Hq, D = cfg.num_attention_heads, cfg.head_dim
        self.n_dense = (Hq + 2 * cfg.num_key_value_heads) * D
        self.res = torch.empty(B, cfg.hidden_size, device=dev, dtype=torch.float32)
        self.res2 = torch.empty_like(self.res)
        self.h = torch.empty(B, cfg.hidden_size, device=dev, dtype=dt)
        self.q = torch.empty(B, Hq, D, device=dev, dtype=dt)
        self.attn = torch.empty(B, Hq, D, device=dev, dtype=dt)
        self.logits = torch.empty(B, cfg.num_experts, device=dev, dtype=torch.float32)
        self.partial = torch.empty(cfg.num_experts_per_tok, B, cfg.hidden_size, device=dev, dtype=torch.float32)
        sa = cfg.sa_config
        if sa is not None and cache.index_k is not None:
            S = cache.max_seq_len
            self.iq = torch.empty(B, sa.indexer_num_heads, sa.indexer_head_dim, device=dev, dtype=dt)
            self.scores = torch.empty(B, 1, S, device=dev, dtype=torch.float16)
            self.ws = torch.zeros(B, WS_STRIDE, device=dev, dtype=torch.int32)
            self.idx = torch.empty(B, 1, min(sa.topk, S), device=dev, dtype=torch.int32)

    def __call__(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Logits [B, 1, V] float32 of tokens [B, 1] written at slot ``pos`` ([1] int64 device tensor)."""
        from keye_agent.model.kernels.decode.attention import decode_attention
        from keye_agent.model.kernels.decode.dsa import dsa_decode
        from keye_agent.model.kernels.decode.moe import moe_decode
        from keye_agent.model.kernels.decode.norms import add_rmsnorm, qkv_post

        model, cfg, cache = self.model, self.cfg, self.cache
        sparse = model.sparse and cfg.sa_config is not None
        B = tokens.shape[0]
        positions = pos.view(1, 1, 1).expand(3, B, 1)
        cos, sin = (t[:, 0] for t in rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, cfg.mrope_section))
        if sparse:
            sa = cfg.sa_config
            assert sa is not None
            icos, isin = (t[:, 0] for t in rope_cos_sin(
                positions, sa.indexer_head_dim, cfg.rope_theta, sa.index_mrope_section(cfg.head_dim,
                                                                                        cfg.mrope_section)))
            hi, di = sa.indexer_num_heads, sa.indexer_head_dim
        x_in: torch.Tensor = model.model.embed_tokens(tokens[:, 0])
        deltas: torch.Tensor | None = None
        eps = cfg.rms_norm_eps
        for i, layer in enumerate(model.model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            add_rmsnorm(x_in, deltas, layer.input_layernorm.weight, eps, self.h, res=self.res)
            w_qkv = self.qkv[i] if sparse else self.qkv[i][: self.n_dense]
            qkv = F.linear(self.h, w_qkv)
            k_c, v_c, ik_c = cache.layer(i)
            index = None
            if sparse:
                ix = attn.sa_indexer
                assert ix is not None and ik_c is not None
                index = (ix.q_norm.weight, ix.k_norm.weight, ix.k_norm.bias, ix.q_norm.eps, icos, isin, self.iq,
                         ik_c, self.ws)
            qkv_post(qkv, pos, attn.q_norm.weight, attn.k_norm.weight, attn.q_norm.eps, cos, sin, self.q, k_c, v_c,
                     index)
            if sparse:
                base = self.n_dense + hi * di
                dsa_decode(self.q[:, None], k_c, v_c, self.iq, qkv[:, base: base + hi], ik_c, pos, attn.topk,
                           attn.scale, self.attn[:, None], self.scores, self.ws, self.idx)
            else:
                decode_attention(self.q, k_c, v_c, pos, attn.scale, self.attn)
            o = F.linear(self.attn.view(B, -1), attn.o_proj.weight)
            add_rmsnorm(self.res, o[None], layer.post_attention_layernorm.weight, eps, self.h, res=self.res2,
                        router=mlp.gate.weight, logits=self.logits)
            moe_decode(self.h, self.logits, mlp.experts.gate_up_proj, mlp.experts.down_proj, mlp.top_k,
                       mlp.norm_topk, self.partial)
            x_in, deltas = self.res2, self.partial
        add_rmsnorm(x_in, deltas, model.model.norm.weight, model.model.norm.eps, self.h)
        return F.linear(self.h, model.lm_head.weight).float()[:, None]
