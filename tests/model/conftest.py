"""Shared fixtures of the model tests: tiny config variants with fp32 random weights."""

from __future__ import annotations

import pytest
import torch

from keye_agent.model import KeyeConfig, build_model


def tiny_config(**changes) -> KeyeConfig:
    return KeyeConfig.from_name("tiny").replace(**changes)


def tiny_model(seed: int = 0, perturb_norms: bool = True, **changes):
    """A tiny model with fp32 random weights; norm weights perturbed so a miswired norm cannot hide."""
    model = build_model(tiny_config(**changes), device="cpu", dtype=torch.float32, seed=seed)
    if perturb_norms:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture
def make_tiny():
    """Factory fixture: ``make_tiny(seed=0, **config_changes)`` -> fp32 tiny model."""
    return tiny_model
