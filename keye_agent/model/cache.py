"""A static (preallocated) KV cache: K, V and the DSA index keys of every layer, fixed shapes for the whole run."""

from __future__ import annotations

import torch

from keye_agent.model.config import KeyeConfig

__all__ = ["StaticCache"]


class StaticCache:
    """Preallocated cache for ``batch_size`` sequences of up to ``max_seq_len`` tokens.

    ``k`` and ``v`` are [L, B, S_max, Hkv, D]; ``index_k`` is [L, B, S_max, d] (DSA index keys, one per token),
    or None for a model without indexer. ``length`` counts the tokens held (the same for every row);
    ``index_length`` counts those whose index keys were written (a dense-mode forward skips the indexer).
    Attention reads ``k[layer][:, :length]`` in place, as views.
    """

    def __init__(self, config: KeyeConfig, batch_size: int, max_seq_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if batch_size < 1:
            raise ValueError(f"StaticCache: batch_size must be >= 1, got {batch_size}")
        if not 1 <= max_seq_len <= config.max_position_embeddings:
            raise ValueError(f"StaticCache: max_seq_len must be in 1..{config.max_position_embeddings} "
                             f"(max_position_embeddings), got {max_seq_len}")
        L, hkv, d = config.num_hidden_layers, config.num_key_value_heads, config.head_dim
        self.batch_size, self.max_seq_len = batch_size, max_seq_len
        self.k = torch.zeros(L, batch_size, max_seq_len, hkv, d, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.index_k: torch.Tensor | None = None
        if config.sa_config is not None:
            self.index_k = torch.zeros(L, batch_size, max_seq_len, config.sa_config.indexer_head_dim,
                                       device=device, dtype=dtype)
        self.length = 0
        self.index_length = 0

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Views of layer i: k, v [B, S_max, Hkv, D] and index keys [B, S_max, d] (or None)."""
        return self.k[i], self.v[i], None if self.index_k is None else self.index_k[i]

    def reserve(self, n: int, sparse: bool) -> int:
        """Check that n more tokens fit and that the index keys are complete for a sparse step; return start."""
        start = self.length
        if start + n > self.max_seq_len:
            raise ValueError(f"StaticCache: {start} cached + {n} new tokens exceed max_seq_len {self.max_seq_len}")
        if sparse and self.index_length != start:
            raise ValueError(f"StaticCache: DSA needs index keys for all {start} cached tokens but only "
                             f"{self.index_length} were written (they were filled in dense mode); reset the cache")
        return start

    def advance(self, n: int, sparse: bool) -> None:
        """Record n tokens written (called by the model after a forward pass)."""
        self.length += n
        if sparse:
            self.index_length = self.length

    def truncate(self, length: int) -> None:
        """Forget every token from position ``length`` on (keeps a common prefix for reuse)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"StaticCache.truncate: length must be in 0..{self.length}, got {length}")
        self.length = length
        self.index_length = min(self.index_length, length)

    def reset(self) -> None:
        """Empty the cache (the memory stays allocated)."""
        self.truncate(0)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cache tensors."""
        n = self.k.nbytes + self.v.nbytes
        return n + (self.index_k.nbytes if self.index_k is not None else 0)
