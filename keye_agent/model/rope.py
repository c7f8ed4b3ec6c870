"""Multimodal rotary embeddings (MRoPE) with the NeoX half-split layout.

Positions come as three streams (t, h, w), [3, B, T]. Frequency i of the head's D/2 takes its angle from the stream
whose section holds i (``mrope_section`` [s_t, s_h, s_w], summing to D/2). Text tokens carry equal t/h/w positions,
which reduces to plain 1-D RoPE.
"""

from __future__ import annotations

import torch

__all__ = ["apply_rope", "rope_cos_sin", "text_positions"]


def text_positions(batch: int, length: int, start: int, device: torch.device | str) -> torch.Tensor:
    """[3, B, T] int64 positions start..start+T-1 on all three streams (text tokens)."""
    pos = torch.arange(start, start + length, device=device, dtype=torch.int64)
    return pos.expand(3, batch, length)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                 section: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [B, T, head_dim] float32 for positions [3, B, T] (or [B, T] for equal streams)."""
    if positions.dim() == 2:
        positions = positions.expand(3, *positions.shape)
    half = head_dim // 2
    if sum(section) != half:
        raise ValueError(f"rope: mrope_section {section} must sum to head_dim / 2 = {half}")
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float64)
                                / head_dim))
    # [3, B, T, half] angles; frequency i takes its stream from the section it falls in.
    angles = positions.to(torch.float64)[..., None] * inv_freq
    s0, s1 = section[0], section[0] + section[1]
    picked = torch.cat((angles[0, ..., :s0], angles[1, ..., s0:s1], angles[2, ..., s1:]), dim=-1)  # [B, T, half]
    emb = torch.cat((picked, picked), dim=-1)
    return emb.cos().float(), emb.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, D] (or [B, T, D]) by cos/sin [B, T, D]; computed in float32, returned in x's dtype."""
    if x.dim() == 4:
        cos, sin = cos[:, :, None], sin[:, :, None]
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)
