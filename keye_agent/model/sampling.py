"""Sampling of the next token: greedy, temperature, top-k, top-p and repetition penalty."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SamplingParams", "sample_next"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each token. ``temperature`` 0 means greedy (argmax)."""

    temperature: float = 0.0
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability reaches top_p (1 keeps all)."""
    top_k: int = 0
    """Keep the top_k most likely tokens (0 keeps all)."""
    repetition_penalty: float = 1.0
    """Divide positive (multiply negative) logits of tokens already in the context by this (1 is off)."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"sampling field 'temperature' must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling field 'top_p' must be in (0, 1], got {self.top_p}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"sampling field 'top_k' must be an integer >= 0, got {self.top_k!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"sampling field 'repetition_penalty' must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def apply_repetition_penalty(logits: torch.Tensor, context: torch.Tensor, penalty: float) -> torch.Tensor:
    """logits [B, V]; context [B, L] token ids already seen."""
    if penalty == 1.0 or context.numel() == 0:
        return logits
    seen = logits.gather(1, context)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, context, seen)


def sample_next(logits: torch.Tensor, params: SamplingParams, context: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of logits [B, V]; returns int64 [B]."""
    logits = logits.float()
    if context is not None:
        logits = apply_repetition_penalty(logits, context, params.repetition_penalty)
    if params.greedy:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens ranked above it already reach top_p (the top token always stays).
        drop = (cum - sorted_logits.softmax(-1)) >= params.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
