"""The Keye-VL-2.0 language model: embeddings, decoder layers with DSA and MoE, final norm and lm_head."""

from __future__ import annotations

import torch
from torch import nn

from keye_agent.model.cache import StaticCache
from keye_agent.model.config import KeyeConfig
from keye_agent.model.layers import DecoderLayer, RMSNorm
from keye_agent.model.rope import rope_cos_sin, text_positions

__all__ = ["KeyeForCausalLM", "KeyeTextModel"]


class KeyeTextModel(nn.Module):
    """The ``model.`` part of the checkpoint: embed_tokens, layers, norm."""

    def __init__(self, config: KeyeConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class KeyeForCausalLM(nn.Module):
    """Language model with head. ``forward`` runs prefill or decode against an optional ``StaticCache``."""

    def __init__(self, config: KeyeConfig) -> None:
        super().__init__()
        self.config = config
        self.model = KeyeTextModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self._sparse = config.sparse

    @property
    def sparse(self) -> bool:
        """True when attention runs DSA, False for dense causal attention."""
        return self._sparse

    def set_sparse(self, on: bool) -> None:
        """Switch DSA on or off (on needs indexer weights, i.e. ``config.sa_config``)."""
        if on and self.config.sa_config is None:
            raise ValueError("set_sparse(True): this model has no indexer (config field 'sa_config' is null)")
        self._sparse = bool(on)

    def new_cache(self, batch_size: int, max_seq_len: int) -> StaticCache:
        """A cache on this model's device and dtype."""
        w = self.model.embed_tokens.weight
        return StaticCache(self.config, batch_size, max_seq_len, device=w.device, dtype=w.dtype)

    def forward(self, input_ids: torch.Tensor, cache: StaticCache | None = None,
                position_ids: torch.Tensor | None = None, last_only: bool = False,
                input_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, V] (or [B, 1, V] with ``last_only``) in float32.

        input_ids [B, T] are appended after the ``cache.length`` tokens already cached (prefill when the cache is
        empty, decode when T == 1); without a cache the sequence starts at 0. position_ids [3, B, T] (t, h, w)
        default to equal text positions counting from the cache length. ``input_embeds`` [B, T, hidden] replaces
        the embedding lookup (for vision tokens later).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        sparse = self._sparse
        if cache is not None:
            if cache.batch_size != B:
                raise ValueError(f"cache batch_size {cache.batch_size} != input batch {B}")
            start = cache.reserve(T, sparse)
        else:
            start = 0
        cfg = self.config
        if position_ids is None:
            position_ids = text_positions(B, T, start, input_ids.device)
        cos, sin = rope_cos_sin(position_ids, cfg.head_dim, cfg.rope_theta, cfg.mrope_section)
        rope: tuple[torch.Tensor, ...] = (cos, sin)
        if cfg.sa_config is not None and sparse:
            sa = cfg.sa_config
            rope += rope_cos_sin(position_ids, sa.indexer_head_dim, cfg.rope_theta,
                                 sa.index_mrope_section(cfg.head_dim, cfg.mrope_section))
        x = self.model.embed_tokens(input_ids) if input_embeds is None else input_embeds
        for i, layer in enumerate(self.model.layers):
            x = layer(x, rope, start, sparse, None if cache is None else cache.layer(i))
        if cache is not None:
            cache.advance(T, sparse)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.model.norm(x)).float()

    def decode_static(self, input_ids: torch.Tensor, pos: torch.Tensor, cache: StaticCache) -> torch.Tensor:
        """One decode step with fixed shapes (CUDA-graph capturable): logits [B, 1, V] float32.

        input_ids [B, 1] go to slot ``pos`` (a [1] int64 tensor on the model's device) of every layer's cache, and
        attend over slots 0..pos. It neither checks nor advances ``cache.length``: ``graph.DecodeGraph`` does both.
        """
        B = input_ids.shape[0]
        cfg = self.config
        positions = pos.view(1, 1, 1).expand(3, B, 1)
        cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, cfg.mrope_section)
        rope: tuple[torch.Tensor, ...] = (cos, sin)
        sparse = self._sparse
        if cfg.sa_config is not None and sparse:
            sa = cfg.sa_config
            rope += rope_cos_sin(positions, sa.indexer_head_dim, cfg.rope_theta,
                                 sa.index_mrope_section(cfg.head_dim, cfg.mrope_section))
        x = self.model.embed_tokens(input_ids)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, rope, 0, sparse, cache.layer(i), pos)
        return self.lm_head(self.model.norm(x)).float()
