"""Configuration of the vision tower (SigLIP-style ViT) and the ``mlp_AR`` projector of Keye-VL-2.0.

The fields are those of the checkpoint's ``vision_config`` (a SigLIP vision config plus ``spatial_merge_size``),
kept in ``KeyeConfig.vision_config`` as a dict; ``VisionConfig.from_dict`` reads that dict and checks it.
``image_mean`` / ``image_std`` are the preprocessor's normalisation (SigLIP's 0.5 / 0.5 unless the dict says
otherwise: inferred, the processor config of the release is not readable here).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["VISION_PRESETS", "VisionConfig"]


@dataclass
class VisionConfig:
    """The ViT and the projector; every check raises ValueError naming the field."""

    hidden_size: int = 1152
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    intermediate_size: int = 4304
    patch_size: int = 14
    image_size: int = 384
    """Sets the learned position table: (image_size // patch_size)^2 entries, interpolated to each grid."""
    num_channels: int = 3
    spatial_merge_size: int = 2
    """The projector merges merge x merge patches into one language-model token."""
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    rope_theta: float = 10000.0
    """Base of the 2-D rotary embedding on (row, column) patch positions."""
    text_hidden_size: int = 2048
    """Width of the language model, the projector's output."""
    packing_positions: int = 32768
    """Rows of ``embeddings.packing_position_embedding`` (in the checkpoint; unused on the interpolated path)."""
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size",
                     "image_size", "num_channels", "spatial_merge_size", "text_hidden_size", "packing_positions"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"vision_config field {name!r} must be an integer >= 1, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"vision_config: num_attention_heads ({self.num_attention_heads}) must divide "
                             f"hidden_size ({self.hidden_size})")
        if self.head_dim % 4:
            raise ValueError(f"vision_config: head_dim {self.head_dim} must be a multiple of 4 for the 2-D rotary "
                             f"embedding (half of it per axis, in pairs)")
        if self.image_size < self.patch_size:
            raise ValueError(f"vision_config: image_size ({self.image_size}) must be >= patch_size ({self.patch_size})")
        if self.hidden_act not in _ACTS:
            raise ValueError(f"vision_config field 'hidden_act' must be one of {sorted(_ACTS)}, got "
                             f"{self.hidden_act!r}")
        for name in ("image_mean", "image_std"):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or len(v) != self.num_channels:
                raise ValueError(f"vision_config field {name!r} must list {self.num_channels} numbers, got {v!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def factor(self) -> int:
        """Image sides are multiples of this (patch_size * spatial_merge_size, 28 for the release)."""
        return self.patch_size * self.spatial_merge_size

    @property
    def merged_size(self) -> int:
        """Input width of the projector: hidden_size * merge^2 (4608 for the release)."""
        return self.hidden_size * self.spatial_merge_size**2

    @classmethod
    def from_dict(cls, data: dict[str, Any], text_hidden_size: int | None = None) -> VisionConfig:
        """Read a checkpoint's ``vision_config`` dict; unknown keys are ignored."""
        if not isinstance(data, dict):
            raise TypeError(f"vision_config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if text_hidden_size is not None:
            kwargs["text_hidden_size"] = text_hidden_size
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_name(cls, name: str) -> VisionConfig:
        if name not in VISION_PRESETS:
            raise ValueError(f"unknown vision preset {name!r}; known presets: {sorted(VISION_PRESETS)}")
        return cls(**VISION_PRESETS[name])


_ACTS = {"gelu_pytorch_tanh", "gelu", "quick_gelu"}

VISION_PRESETS: dict[str, dict[str, Any]] = {
    # SigLIP-so400m-patch14-384 shapes with the 2048-wide projector (MODEL.md).
    "keye-vl-2.0": dict(),
    # Same structure, a few hundred thousand parameters: tests and CPU plumbing.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, patch_size=14,
                 image_size=56, text_hidden_size=128, packing_positions=64),
}
"""Named vision configurations: name -> VisionConfig fields."""
