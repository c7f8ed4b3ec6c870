"""Placeholders and prompts with images and videos.

A chat template writes each image as ``<|vision_start|><|image_pad|><|vision_end|>`` and each video as
``<|vision_start|><|video_pad|><|vision_end|>``. Expansion replaces, in token ids, each ``<|image_pad|>`` with one
pad per image token, and each ``<|video_pad|>`` with, per frame, ``<|frame|>`` and the frame's time in seconds
with one decimal (the text the fork's processor writes, e.g. ``<|frame|>0.5``) followed by that frame's pads.
Images and videos are taken in order, each kind from its own list, as the fork's processor does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from keye_agent.errors import MediaError
from keye_agent.model.rope import mrope_positions
from keye_agent.model.vision.preprocess import VisionInput

__all__ = ["FRAME_TOKEN", "MultimodalPrompt", "VisionTokens", "build_prompt", "frame_text"]

FRAME_TOKEN = "<|frame|>"


def frame_text(timestamp: float) -> str:
    """The text before a frame's pads: ``<|frame|>`` and its time, one decimal."""
    return f"{FRAME_TOKEN}{timestamp:.1f}"


@dataclass(frozen=True)
class VisionTokens:
    """Ids of the vision special tokens in one vocabulary."""

    image_pad: int
    video_pad: int
    vision_start: int
    vision_end: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, config: Any = None) -> VisionTokens:
        """From a tokenizer's vocabulary (``token_to_id``), falling back to the config's ids."""
        names = {"image_pad": ("<|image_pad|>", "image_token_id"), "video_pad": ("<|video_pad|>", "video_token_id"),
                 "vision_start": ("<|vision_start|>", "vision_start_token_id"),
                 "vision_end": ("<|vision_end|>", "vision_end_token_id")}
        got = {}
        for field_name, (tok, cfg_name) in names.items():
            tid = tokenizer.token_to_id(tok) if tokenizer is not None else None
            if tid is None and config is not None:
                tid = getattr(config, cfg_name, None)
            if tid is None:
                raise MediaError(f"the tokenizer has no {tok} token and the config no {cfg_name}: this model "
                                 f"cannot take images or videos")
            got[field_name] = int(tid)
        return cls(**got)


@dataclass
class MultimodalPrompt:
    """A prompt ready for prefill: ids with placeholders expanded, 3-D positions, and the tower's inputs."""

    input_ids: list[int]
    positions: torch.Tensor
    """[3, T] int64 (t, h, w)."""
    rope_delta: int
    """Generated token i (i >= T) sits at position i + rope_delta."""
    inputs: list[VisionInput]
    """In the order their tokens appear."""
    tokens: VisionTokens

    @property
    def grids(self) -> list[tuple[int, int, int]]:
        return [g for inp in self.inputs for g in inp.grids]

    @property
    def pixel_values(self) -> torch.Tensor:
        return torch.cat([inp.pixel_values for inp in self.inputs])

    @property
    def notes(self) -> list[str]:
        return [n for inp in self.inputs for n in inp.notes]


def build_prompt(ids: Sequence[int], inputs: Sequence[VisionInput], tokens: VisionTokens,
                 encode: Callable[[str], list[int]], merge_size: int = 2) -> MultimodalPrompt:
    """Expand the placeholders of ``ids`` with ``inputs`` and compute the 3-D positions."""
    images = [x for x in inputs if x.kind == "image"]
    videos = [x for x in inputs if x.kind == "video"]
    n_img = sum(1 for t in ids if t == tokens.image_pad)
    n_vid = sum(1 for t in ids if t == tokens.video_pad)
    if (n_img, n_vid) != (len(images), len(videos)):
        raise MediaError(f"the prompt holds {n_img} image and {n_vid} video placeholders, but {len(images)} images "
                         f"and {len(videos)} videos were given",
                         hint="write one <|image_pad|> / <|video_pad|> per image / video")
    out: list[int] = []
    order: list[VisionInput] = []
    it_img, it_vid = iter(images), iter(videos)
    for t in ids:
        if t == tokens.image_pad:
            img = next(it_img)
            order.append(img)
            out.extend([tokens.image_pad] * img.num_tokens)
        elif t == tokens.video_pad:
            vid = next(it_vid)
            order.append(vid)
            stamps = vid.timestamps or [None] * len(vid.grids)
            for ts, n in zip(stamps, vid.frame_tokens, strict=True):
                out.extend(encode(FRAME_TOKEN if ts is None else frame_text(ts)))
                out.extend([tokens.video_pad] * n)
        else:
            out.append(int(t))
    grids = [g for inp in order for g in inp.grids]
    pos, delta = mrope_positions(out, grids, {tokens.image_pad, tokens.video_pad}, merge_size)
    return MultimodalPrompt(out, pos, delta, order, tokens)
