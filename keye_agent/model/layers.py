"""Building blocks of the decoder: RMSNorm, the DSA lightning indexer, GQA attention with QK-norm, and the MoE.

Parameter names follow the checkpoint (``self_attn.q_proj``, ``self_attn.sa_indexer.k_norm``, ``mlp.gate``, ...).
Experts are stored fused, in the checkpoint's fused layout:

- ``mlp.experts.gate_up_proj`` [E, hidden, 2 * I]: columns ``[:I]`` are expert e's ``gate_proj.weight.T``, columns
  ``[I:]`` its ``up_proj.weight.T``;
- ``mlp.experts.down_proj`` [E, I, hidden]: expert e's ``down_proj.weight.T``.

so a per-expert checkpoint (``mlp.experts.E.{gate,up,down}_proj.weight``) loads by transposing into those slices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from keye_agent.model import moe, ops, static_decode
from keye_agent.model.config import KeyeConfig
from keye_agent.model.rope import apply_rope

__all__ = ["Attention", "DecoderLayer", "Indexer", "RMSNorm", "SparseMoe"]

_INDEXER_EPS = 1e-6  # the reference fork fixes the indexer norms' eps at 1e-6


class RMSNorm(nn.Module):
    """RMSNorm over the last dim, computed in float32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Indexer(nn.Module):
    """The DSA lightning indexer (MODEL.md steps 1-2): per token H gated query heads and one shared index key."""

    def __init__(self, config: KeyeConfig) -> None:
        super().__init__()
        sa = config.sa_config
        assert sa is not None
        self.n_heads, self.head_dim = sa.indexer_num_heads, sa.indexer_head_dim
        self.q_proj = nn.Linear(config.hidden_size, self.n_heads * self.head_dim + self.n_heads, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.head_dim, bias=False)
        self.q_norm = RMSNorm(self.head_dim, _INDEXER_EPS)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=_INDEXER_EPS)

    def forward(self, x: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B,T,hidden] -> q [B,T,H,d], gate w [B,T,H], k [B,T,d] (q and k rotated by MRoPE)."""
        B, T, _ = x.shape
        qw = self.q_proj(x)
        q = self.q_norm(qw[..., : self.n_heads * self.head_dim].reshape(B, T, self.n_heads, self.head_dim))
        w = qw[..., self.n_heads * self.head_dim:]
        ln = self.k_norm
        k = F.layer_norm(self.k_proj(x).float(), (self.head_dim,), ln.weight.float(), ln.bias.float(), ln.eps)
        return apply_rope(q, cos, sin), w, apply_rope(k, cos, sin).to(x.dtype)


class Attention(nn.Module):
    """GQA with per-head RMSNorm on q and k, MRoPE, and DSA (when an indexer exists and sparse mode is on)."""

    def __init__(self, config: KeyeConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                                  config.head_dim)
        h = config.hidden_size
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=False)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.sa_indexer = Indexer(config) if config.sa_config is not None else None
        self.topk = config.sa_config.topk if config.sa_config is not None else 0
        self.scale = self.head_dim**-0.5

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, ...], start: int, sparse: bool,
                kv: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None,
                pos: torch.Tensor | None = None) -> torch.Tensor:
        """x [B,T,hidden]; rope = (cos, sin, index_cos, index_sin); kv = this layer's cache views [B,S_max,...].

        With ``pos`` (a [1] int64 device tensor; T == 1 and kv given) the step runs with fixed shapes over the whole
        cache (``static_decode``), so it can be captured in a CUDA graph; ``start`` is then ignored.
        """
        B, T, _ = x.shape
        q, k, v = self.project(x, rope)
        if pos is not None:
            return self.o_proj(self._static_step(x, q, k, v, rope, pos, sparse, kv).reshape(B, T, -1))
        end = start + T
        if kv is not None:
            kv[0][:, start:end] = k
            kv[1][:, start:end] = v
            k, v = kv[0][:, :end], kv[1][:, :end]
        if sparse and self.sa_indexer is not None:
            iq, iw, ik = self.sa_indexer(x, rope[2], rope[3])
            if kv is not None:
                assert kv[2] is not None
                kv[2][:, start:end] = ik
                ik = kv[2][:, :end]
            idx = ops.indexer_topk(iq, iw, ik, start, self.topk)
            out = ops.sparse_attention(q, k, v, idx, self.scale)
        else:
            out = ops.dense_attention(q, k, v, start, self.scale)
        return self.o_proj(out.reshape(B, T, self.n_heads * self.head_dim))

    def project(self, x: torch.Tensor, rope: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [B,T,Hq,D], k and v [B,T,Hkv,D] of x [B,T,hidden]: projected, QK-normed, q and k rotated."""
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.n_heads, self.head_dim))
        k = self.k_norm(self.k_proj(x).view(B, T, self.n_kv, self.head_dim))
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim)
        return apply_rope(q, rope[0], rope[1]), apply_rope(k, rope[0], rope[1]), v

    def _static_step(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     rope: tuple[torch.Tensor, ...], pos: torch.Tensor, sparse: bool,
                     kv: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None) -> torch.Tensor:
        if kv is None or q.shape[1] != 1:
            raise ValueError("Attention: the fixed-shape step (pos given) needs a cache and exactly one new token")
        static_decode.write_at(kv[0], pos, k)
        static_decode.write_at(kv[1], pos, v)
        if sparse and self.sa_indexer is not None:
            assert kv[2] is not None
            iq, iw, ik = self.sa_indexer(x, rope[2], rope[3])
            static_decode.write_at(kv[2], pos, ik)
            return static_decode.decode_sparse(q, kv[0], kv[1], iq, iw, kv[2], pos, self.topk, self.scale)
        return static_decode.decode_dense(q, kv[0], kv[1], pos, self.scale)


class Experts(nn.Module):
    """All experts of one layer as two fused tensors (layout in the module docstring)."""

    def __init__(self, config: KeyeConfig) -> None:
        super().__init__()
        e, h, i = config.num_experts, config.hidden_size, config.moe_intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(e, h, 2 * i))
        self.down_proj = nn.Parameter(torch.empty(e, i, h))


class SparseMoe(nn.Module):
    """Softmax router, top-k experts with renormalised weights, SwiGLU experts (computed by ``moe.experts``)."""

    def __init__(self, config: KeyeConfig) -> None:
        super().__init__()
        self.top_k, self.n_experts, self.norm_topk = (config.num_experts_per_tok, config.num_experts,
                                                      config.norm_topk_prob)
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = Experts(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [N, hidden]
        probs = torch.softmax(self.gate(x).float(), dim=-1)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)  # [N, k]
        if self.norm_topk:
            weights = weights / weights.sum(-1, keepdim=True)
        out = moe.experts(x, chosen, weights, self.experts.gate_up_proj, self.experts.down_proj)
        return out.view(shape)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then h + moe(norm(h))."""

    def __init__(self, config: KeyeConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SparseMoe(config)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, ...], start: int, sparse: bool,
                kv: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None,
                pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, start, sparse, kv, pos)
        return x + self.mlp(self.post_attention_layernorm(x))
