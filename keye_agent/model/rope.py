"""Multimodal rotary embeddings (MRoPE) with the NeoX half-split layout.

Positions come as three streams (t, h, w), [3, B, T]. Frequency i of the head's D/2 takes its angle from the stream
whose section holds i (``mrope_section`` [s_t, s_h, s_w], summing to D/2). Text tokens carry equal t/h/w positions,
which reduces to plain 1-D RoPE.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

__all__ = ["apply_rope", "mrope_positions", "rope_cos_sin", "text_positions"]


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


def mrope_positions(input_ids: Sequence[int], grids: Sequence[Sequence[int]], vision_token_ids: Collection[int],
                    merge_size: int = 2) -> tuple[torch.Tensor, int]:
    """3-D positions [3, T] int64 (t, h, w) of a prompt holding vision tokens, and the decode offset ``delta``.

    Each run of vision tokens (ids in ``vision_token_ids``) takes the next grid (t, h, w) in patches, in order:
    its t * (h/m) * (w/m) tokens get positions start + (frame, row, column) on the three streams. Text tokens
    get equal positions on all three, counting on from one past the largest position before them. A Keye video
    is one run per frame (grid (1, h, w)) with its timestamp text between runs; a Qwen2-VL video is one run of
    grid (t, h, w). Token i >= T (decoded later) sits at position i + delta on all streams.
    """
    ids = list(input_ids)
    vision = set(vision_token_ids)
    pos = torch.empty(3, len(ids), dtype=torch.int64)
    it = iter(grids)
    nxt, i = 0, 0
    while i < len(ids):
        if ids[i] not in vision:
            pos[:, i] = nxt
            nxt += 1
            i += 1
            continue
        g = next(it, None)
        if g is None:
            raise ValueError(f"mrope_positions: vision token run at index {i} has no grid left ({len(grids)} given)")
        t, h, w = int(g[0]), int(g[1]) // merge_size, int(g[2]) // merge_size
        n = t * h * w
        if i + n > len(ids) or any(x not in vision for x in ids[i:i + n]):
            raise ValueError(f"mrope_positions: grid {tuple(g)} needs {n} vision tokens at index {i}, the prompt has "
                             f"fewer in a row")
        tt = torch.arange(t).repeat_interleave(h * w)
        hh = torch.arange(h).repeat_interleave(w).repeat(t)
        ww = torch.arange(w).repeat(t * h)
        block = torch.stack((tt, hh, ww)) + nxt
        pos[:, i:i + n] = block
        nxt = int(block.max()) + 1
        i += n
    if next(it, None) is not None:
        raise ValueError(f"mrope_positions: {len(grids)} grids given, the prompt holds fewer vision runs")
    return pos, nxt - len(ids)
