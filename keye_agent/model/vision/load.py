"""Fill a VisionTower from checkpoint tensors named as in the release (``visual.*``, ``mlp_AR.*``).

The names are the fork's checkpoint layout, read unchanged: ``visual.vision_model.embeddings.patch_embedding``,
``...position_embedding``, ``...packing_position_embedding``, ``visual.vision_model.encoder.layers.N.
{layer_norm1,self_attn.{q,k,v,out}_proj,layer_norm2,mlp.fc1,mlp.fc2}``, ``visual.vision_model.post_layernorm``,
``mlp_AR.{pre_norm,linear_1,linear_2}``. SigLIP's pooling head (``visual.vision_model.head.*``) is not used and
is skipped, as the fork skips it.
"""

from __future__ import annotations

import torch

from keye_agent.model.vision.config import VisionConfig
from keye_agent.model.vision.vit import VisionTower

__all__ = ["VisionFiller", "build_tower", "is_vision_name", "tower_config"]

_PREFIXES = ("visual.", "mlp_AR.")
_SKIPPED = ("visual.vision_model.head.",)


def is_vision_name(name: str) -> bool:
    return name.startswith(_PREFIXES)


class VisionFiller:
    """A tower built uninitialised on ``device``; ``copy(name, tensor)`` fills it, ``finish()`` checks it is whole."""

    def __init__(self, cfg: VisionConfig, device: torch.device | str, dtype: torch.dtype) -> None:
        with torch.device("meta"):
            tower = VisionTower(cfg)
        self.tower = tower.to(dtype=dtype).to_empty(device=device).eval().requires_grad_(False)
        self.params = dict(self.tower.named_parameters())
        self.filled: set[str] = set()
        self.skipped: list[str] = []

    def wants(self, name: str) -> bool:
        return name in self.params

    def shape_of(self, name: str) -> tuple[int, ...]:
        return tuple(self.params[name].shape)

    def copy(self, name: str, tensor: torch.Tensor) -> None:
        with torch.no_grad():
            self.params[name].copy_(tensor)
        self.filled.add(name)

    def skip(self, name: str) -> bool:
        """True for tensors the tower does not use on purpose (the pooling head)."""
        if name.startswith(_SKIPPED):
            self.skipped.append(name)
            return True
        return False

    def missing(self) -> list[str]:
        return sorted(set(self.params) - self.filled)


def build_tower(cfg: VisionConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                random_weights: bool = True, seed: int = 0) -> VisionTower:
    """A VisionTower materialised on ``device``; with ``random_weights`` filled as ``build.init_random_weights``."""
    from keye_agent.model.build import init_random_weights

    with torch.device("meta"):
        tower = VisionTower(cfg)
    tower = tower.to(dtype=dtype).to_empty(device=device).eval().requires_grad_(False)
    if random_weights and torch.device(device).type != "meta":
        init_random_weights(tower, seed)
    return tower


def tower_config(config: object) -> VisionConfig | None:
    """The VisionConfig of a KeyeConfig (None when it has no ``vision_config``)."""
    vc = getattr(config, "vision_config", None)
    return VisionConfig.from_dict(vc, getattr(config, "hidden_size", None)) if vc else None
