"""Construct a model on the meta device, materialise it on the target device, optionally fill random weights."""

from __future__ import annotations

import torch
from torch import nn

from keye_agent.model.config import KeyeConfig
from keye_agent.model.layers import RMSNorm
from keye_agent.model.model import KeyeForCausalLM

__all__ = ["build_model", "init_random_weights"]

_STD = 0.02


def build_model(preset_or_config: str | KeyeConfig, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32, random_weights: bool = True, seed: int = 0) -> KeyeForCausalLM:
    """Build a ``KeyeForCausalLM`` for a preset name or a ``KeyeConfig``.

    The modules are created on the meta device and materialised directly on ``device`` in ``dtype``, so a 30B
    model never touches host memory. With ``random_weights`` the weights are drawn on the device (normal, std
    0.02; norms at one); without (or on the meta device), the parameters are left uninitialised for a loader.
    """
    if isinstance(preset_or_config, str):
        config = KeyeConfig.from_name(preset_or_config)
    elif isinstance(preset_or_config, KeyeConfig):
        config = preset_or_config
    else:
        raise TypeError(f"build_model: preset_or_config must be a preset name or KeyeConfig, got "
                        f"{type(preset_or_config).__name__}")
    if not dtype.is_floating_point:
        raise TypeError(f"build_model: dtype must be a floating dtype, got {dtype}")
    with torch.device("meta"):
        model = KeyeForCausalLM(config)
    model = model.to(dtype=dtype).to_empty(device=device)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight  # to_empty breaks the tie
    model.eval().requires_grad_(False)
    if random_weights and torch.device(device).type != "meta":
        init_random_weights(model, seed)
    return model


@torch.no_grad()
def init_random_weights(model: nn.Module, seed: int = 0) -> None:
    """Fill every parameter in place on its device: normal(0, 0.02), norm weights 1, norm biases 0."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (RMSNorm, nn.LayerNorm)):
            module.weight.fill_(1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
            continue
        for p in module.parameters(recurse=False):
            p.normal_(0.0, _STD, generator=gen)
