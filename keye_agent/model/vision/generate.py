"""Prefill and generation with images and videos: tower features in place of the pad embeddings, 3-D positions.

Decode steps after a multimodal prefill run at position ``cache.length + rope_delta`` (vision tokens take fewer
positions than slots), so they use the regular forward with explicit positions, not the fixed-shape graph step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from keye_agent.model.cache import StaticCache
from keye_agent.model.generate import GenerationOutput
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.sampling import SamplingParams, sample_next
from keye_agent.model.vision.prompt import MultimodalPrompt
from keye_agent.model.vision.vit import VisionTower

__all__ = ["embed_prompt", "prefill", "stream_generate_multimodal"]


def embed_prompt(model: KeyeForCausalLM, tower: VisionTower, prompt: MultimodalPrompt,
                 max_patches: int = 16384) -> torch.Tensor:
    """Input embeddings [1, T, hidden]: token embeddings with the tower's features at the pad tokens."""
    emb = model.model.embed_tokens
    ids = torch.tensor([prompt.input_ids], device=emb.weight.device)
    x = emb(ids)
    if prompt.inputs:
        feats = tower(prompt.pixel_values, prompt.grids, max_patches=max_patches)
        mask = (ids[0] == prompt.tokens.image_pad) | (ids[0] == prompt.tokens.video_pad)
        if int(mask.sum()) != feats.shape[0]:
            raise ValueError(f"embed_prompt: {int(mask.sum())} pad tokens but the tower gave {feats.shape[0]} "
                             f"features")
        x[0, mask] = feats.to(device=x.device, dtype=x.dtype)
    return x


def prefill(model: KeyeForCausalLM, tower: VisionTower, prompt: MultimodalPrompt, cache: StaticCache | None = None,
            last_only: bool = True, max_patches: int = 16384) -> torch.Tensor:
    """Run the whole prompt (cache empty or absent); logits [1, 1 or T, V] float32."""
    if cache is not None and cache.length:
        raise ValueError("prefill: a multimodal prompt is prefilled into an empty cache")
    device = model.model.embed_tokens.weight.device
    x = embed_prompt(model, tower, prompt, max_patches)
    ids = torch.tensor([prompt.input_ids], device=device)
    return model(ids, cache=cache, position_ids=prompt.positions[:, None].to(device), input_embeds=x,
                 last_only=last_only)


@torch.inference_mode()
def stream_generate_multimodal(model: KeyeForCausalLM, tower: VisionTower, prompt: MultimodalPrompt,
                               max_new_tokens: int, sampling: SamplingParams | None = None,
                               stop_token_ids: Sequence[int] | None = None) -> Iterator[int]:
    """Yield generated ids; the generator's return value is a ``GenerationOutput`` (as ``stream_generate``)."""
    sampling = sampling or SamplingParams()
    stops = set(model.config.stop_token_ids if stop_token_ids is None else stop_token_ids)
    T = len(prompt.input_ids)
    out = GenerationOutput()
    if max_new_tokens <= 0:
        return out
    device = model.model.embed_tokens.weight.device
    cache = model.new_cache(1, T + max_new_tokens)
    gen = torch.Generator(device=device).manual_seed(sampling.seed) if sampling.seed is not None else None
    context = torch.tensor([prompt.input_ids], device=device)
    logits = prefill(model, tower, prompt, cache)[:, -1]
    for step in range(max_new_tokens):
        token = sample_next(logits, sampling, context if sampling.repetition_penalty != 1.0 else None, gen)
        tid = int(token.item())
        if tid in stops:
            out.finish_reason, out.stop_token_id = "stop", tid
            return out
        out.token_ids.append(tid)
        yield tid
        if step + 1 == max_new_tokens:
            break
        new = token.view(1, 1)
        context = torch.cat([context, new], dim=1)
        pos = torch.full((3, 1, 1), cache.length + prompt.rope_delta, dtype=torch.int64, device=device)
        logits = model(new, cache=cache, position_ids=pos, last_only=True)[:, -1]
    out.finish_reason = "length"
    return out
