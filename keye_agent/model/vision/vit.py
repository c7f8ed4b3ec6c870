"""The vision tower of Keye-VL-2.0: a SigLIP-style ViT over packed images, and the ``mlp_AR`` projector.

Images (and video frames, one image each) are packed into one sequence of patches with no padding between them:
``pixel_values`` [N, C * p * p] (or [N, C, p, p]) in raster order per image, ``grids`` one (t, h, w) per image in
patch units. Attention is block-diagonal: a patch attends only to the patches of its own frame. Runs of frames of
equal size are batched into one attention call, so a video costs one call per chunk, not one per frame.

Each patch gets the learned position table (a square grid) bilinearly resized to its image's (h, w) grid, and
inside attention a 2-D rotary embedding: half of each head's dims rotate with the patch row, half with the column.
Parameter names follow the checkpoint: ``visual.vision_model.{embeddings,encoder.layers.N,post_layernorm}`` and
``mlp_AR.{pre_norm,linear_1,linear_2}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from keye_agent.model.vision.config import VisionConfig

__all__ = ["KeyeVisionModel", "Projector", "VisionTower", "frame_grids"]

Grid = tuple[int, int, int]


def frame_grids(grids: Sequence[Sequence[int]]) -> list[Grid]:
    """Split every (t, h, w) into t frames (1, h, w): the tower attends within a frame."""
    out: list[Grid] = []
    for i, g in enumerate(grids):
        if len(g) != 3:
            raise ValueError(f"vision: grids[{i}] must be (t, h, w), got {tuple(g)}")
        t, h, w = (int(x) for x in g)
        if min(t, h, w) < 1:
            raise ValueError(f"vision: grids[{i}] = {(t, h, w)} has a side < 1")
        out.extend([(1, h, w)] * t)
    return out


def _act(name: str):
    if name == "gelu_pytorch_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    return F.gelu


class Embeddings(nn.Module):
    """Patch projection (a stride-p convolution, computed as one matmul) plus the interpolated position table."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size, cfg.patch_size, cfg.patch_size)
        self.side = cfg.image_size // cfg.patch_size
        self.position_embedding = nn.Embedding(self.side * self.side, cfg.hidden_size)
        # Present in the checkpoint; the interpolated path (the one the fork runs) does not read it.
        self.packing_position_embedding = nn.Embedding(cfg.packing_positions, cfg.hidden_size)

    def position_table(self, h: int, w: int) -> torch.Tensor:
        """[h * w, D]: the learned square table resized to an (h, w) grid (bilinear, corners not aligned)."""
        table = self.position_embedding.weight
        grid = table.float().view(1, self.side, self.side, -1).permute(0, 3, 1, 2)
        if (h, w) != (self.side, self.side):
            grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        return grid.permute(0, 2, 3, 1).reshape(h * w, -1).to(table.dtype)

    def forward(self, pixel_values: torch.Tensor, grids: Sequence[Grid]) -> torch.Tensor:
        conv = self.patch_embedding
        x = F.linear(pixel_values.reshape(pixel_values.shape[0], -1).to(conv.weight.dtype),
                     conv.weight.reshape(conv.weight.shape[0], -1), conv.bias)  # [N, D]
        tables: dict[tuple[int, int], torch.Tensor] = {}
        parts = []
        for _, h, w in grids:
            if (h, w) not in tables:
                tables[(h, w)] = self.position_table(h, w)
            parts.append(tables[(h, w)])
        return x + torch.cat(parts)


class Attention(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.n_heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor, runs: Sequence[tuple[int, int, int]],
                rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        N = x.shape[0]
        shape = (N, self.n_heads, self.head_dim)
        q, k, v = self.q_proj(x).view(shape), self.k_proj(x).view(shape), self.v_proj(x).view(shape)
        if rope is not None:
            q, k = _rotate(q, *rope), _rotate(k, *rope)
        out = torch.empty_like(q)
        for start, count, length in runs:
            end = start + count * length
            qs, ks, vs = (t[start:end].view(count, length, self.n_heads, self.head_dim).transpose(1, 2)
                          for t in (q, k, v))
            o = F.scaled_dot_product_attention(qs, ks, vs)  # [count, H, L, Dh]
            out[start:end] = o.transpose(1, 2).reshape(count * length, self.n_heads, self.head_dim)
        return self.out_proj(out.reshape(N, -1))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """NeoX half-split rotation of x [N, H, Dh] by cos/sin [N, Dh], in float32."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return (xf * cos[:, None] + torch.cat((-x2, x1), dim=-1) * sin[:, None]).to(x.dtype)


class MLP(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = _act(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = Attention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, runs: Sequence[tuple[int, int, int]],
                rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), runs, rope)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))


class VisionTransformer(nn.Module):
    """``visual.vision_model``: embeddings, encoder, post_layernorm."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def rope_tables(self, grids: Sequence[Grid], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [N, head_dim] float32: dims [0, Dh/4) and [Dh/2, 3Dh/4) turn with the row, the rest with the
        column (each half of the NeoX split is [row freqs, column freqs])."""
        rd = self.cfg.head_dim // 2
        inv_freq = 1.0 / (self.cfg.rope_theta ** (torch.arange(0, rd, 2, device=device, dtype=torch.float32) / rd))
        rows, cols = [], []
        for _, h, w in grids:
            idx = torch.arange(h * w, device=device)
            rows.append(idx // w)
            cols.append(idx % w)
        r, c = torch.cat(rows).float(), torch.cat(cols).float()
        ang = torch.cat((r[:, None] * inv_freq, c[:, None] * inv_freq), dim=-1)  # [N, rd]
        ang = torch.cat((ang, ang), dim=-1)
        return ang.cos(), ang.sin()

    def forward(self, pixel_values: torch.Tensor, grids: Sequence[Sequence[int]], use_rope: bool = True
                ) -> torch.Tensor:
        """Hidden states [N, D] of the packed patches (after post_layernorm)."""
        frames = frame_grids(grids)
        lengths = [h * w for _, h, w in frames]
        if sum(lengths) != pixel_values.shape[0]:
            raise ValueError(f"vision: grids hold {sum(lengths)} patches, pixel_values has {pixel_values.shape[0]}")
        runs: list[tuple[int, int, int]] = []  # (first patch, frames, patches per frame) of equal-size frames
        start = 0
        for n in lengths:
            if runs and runs[-1][2] == n:
                s, c, _ = runs[-1]
                runs[-1] = (s, c + 1, n)
            else:
                runs.append((start, 1, n))
            start += n
        x = self.embeddings(pixel_values, frames)
        rope = self.rope_tables(frames, x.device) if use_rope else None
        for layer in self.encoder.layers:
            x = layer(x, runs, rope)
        return self.post_layernorm(x)


class KeyeVisionModel(nn.Module):
    """``visual``: holds ``vision_model`` (the checkpoint nests it so)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.vision_model = VisionTransformer(cfg)

    def forward(self, pixel_values: torch.Tensor, grids: Sequence[Sequence[int]], use_rope: bool = True
                ) -> torch.Tensor:
        return self.vision_model(pixel_values, grids, use_rope)


class Projector(nn.Module):
    """``mlp_AR``: merge each 2x2 block of patches (row-major: (0,0), (0,1), (1,0), (1,1)), LayerNorm, Linear, GELU,
    Linear to the language model's width."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.merge = cfg.spatial_merge_size
        self.pre_norm = nn.LayerNorm(cfg.merged_size, eps=1e-5)
        self.linear_1 = nn.Linear(cfg.merged_size, cfg.merged_size)
        self.linear_2 = nn.Linear(cfg.merged_size, cfg.text_hidden_size)

    def merge_patches(self, x: torch.Tensor, grids: Sequence[Grid]) -> torch.Tensor:
        """[N, D] raster patches -> [N / m^2, m^2 * D] merged tokens, frame by frame."""
        m, d, out, start = self.merge, x.shape[-1], [], 0
        for t, h, w in grids:
            if h % m or w % m:
                raise ValueError(f"vision: grid {(t, h, w)} is not divisible by the merge size {m}")
            n = t * h * w
            blocks = x[start:start + n].view(t, h // m, m, w // m, m, d).permute(0, 1, 3, 2, 4, 5)
            out.append(blocks.reshape(-1, m * m * d))
            start += n
        return torch.cat(out)

    def forward(self, x: torch.Tensor, grids: Sequence[Sequence[int]]) -> torch.Tensor:
        merged = self.merge_patches(x, frame_grids(grids))
        return self.linear_2(F.gelu(self.linear_1(self.pre_norm(merged))))


class VisionTower(nn.Module):
    """``visual`` + ``mlp_AR``: packed patches -> language-model embeddings [N / merge^2, text_hidden].

    ``max_patches`` bounds one pass (whole frames at a time, as the fork's chunked video path): long videos then
    need memory for one chunk of activations, not for the whole video.
    """

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.config = cfg
        self.visual = KeyeVisionModel(cfg)
        self.mlp_AR = Projector(cfg)

    @property
    def dtype(self) -> torch.dtype:
        return self.mlp_AR.linear_1.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.mlp_AR.linear_1.weight.device

    def forward(self, pixel_values: torch.Tensor, grids: Sequence[Sequence[int]], max_patches: int = 16384
                ) -> torch.Tensor:
        frames = frame_grids(grids)
        total = sum(h * w for _, h, w in frames)
        if total != pixel_values.shape[0]:
            raise ValueError(f"vision: grids hold {total} patches, pixel_values has {pixel_values.shape[0]}")
        pixel_values = pixel_values.to(self.device, self.dtype)
        outs, chunk, start, size = [], [], 0, 0
        for g in frames + [None]:  # type: ignore[list-item]
            n = 0 if g is None else g[1] * g[2]
            if chunk and (g is None or size + n > max_patches):
                x = self.visual(pixel_values[start:start + size], chunk)
                outs.append(self.mlp_AR(x, chunk))
                start, chunk, size = start + size, [], 0
            if g is not None:
                chunk.append(g)
                size += n
        return torch.cat(outs)
