"""Video input as Keye-VL-2.0 reads it (the fork's ``keye_adaptive_video.py``; every frame "slow").

Frames are sampled at ``fps`` (2 by default, never above the file's rate; at least ``min_frames``), evenly over the
whole video by index (``linspace(0, n - 1, k)`` rounded); each frame's timestamp is index / file fps, written in
the prompt with one decimal. All frames get one size, chosen by smart resize so that a frame holds between
``min_tokens`` (64) and ``max_tokens`` (256) tokens and all frames together at most ``max_total_tokens``.
When even ``min_tokens`` per frame would pass the total, fewer frames are sampled (evenly) and a note says so;
``strict=True`` raises instead. Decoding uses PyAV.

One deviation from the fork, on purpose: the fork's binary search can end one token per frame above the total
budget; here the per-frame size is the largest that fits (total // frames, clipped to [min_tokens, max_tokens]).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from keye_agent.errors import MediaError
from keye_agent.model.vision.config import VisionConfig
from keye_agent.model.vision.preprocess import VisionInput, patchify, smart_resize, source_name

__all__ = ["VideoOptions", "VideoPlan", "plan_frames", "read_video", "video_input"]


@dataclass(frozen=True)
class VideoOptions:
    """How a video is sampled; the defaults are the fork's for Keye-VL-2.0."""

    fps: float = 2.0
    min_frames: int = 2
    max_frames: int | None = None
    min_tokens: int = 64
    """Per frame, after the 2x2 merge."""
    max_tokens: int = 256
    max_total_tokens: int = 184320
    """All frames of the video together (the fork's VIDEO_TOTAL_MAX_TOKENS)."""
    strict: bool = False
    """Raise MediaError instead of sampling fewer frames than ``fps`` asks."""

    def __post_init__(self) -> None:
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"VideoOptions.fps must be > 0, got {self.fps}")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"VideoOptions: need 1 <= min_tokens ({self.min_tokens}) <= max_tokens "
                             f"({self.max_tokens})")
        if self.max_total_tokens < self.min_tokens:
            raise ValueError(f"VideoOptions.max_total_tokens ({self.max_total_tokens}) is below min_tokens "
                             f"({self.min_tokens}): not even one frame fits")


@dataclass
class VideoPlan:
    indices: list[int]
    timestamps: list[float]
    tokens_per_frame: int
    """The budget per frame; the resized frame holds at most this many tokens."""
    notes: list[str]


def plan_frames(total_frames: int, video_fps: float, opts: VideoOptions = VideoOptions(), name: str = "video"
                ) -> VideoPlan:
    """Which frames to take, their timestamps, and the token budget of each (see the module docstring)."""
    if total_frames < 1 or not video_fps > 0:
        raise MediaError(f"{name}: no frames to read ({total_frames} frames at {video_fps} fps)", source=name)
    fps = min(opts.fps, video_fps)
    wanted = int(total_frames / video_fps * fps)
    by_budget = max(1, opts.max_total_tokens // opts.min_tokens)
    cap = min(total_frames, by_budget, opts.max_frames or total_frames)
    n = min(max(wanted, opts.min_frames), cap)
    notes: list[str] = []
    if n < wanted:
        why = (f"the {opts.max_total_tokens}-token budget at {opts.min_tokens} tokens per frame"
               if cap == by_budget else f"max_frames={opts.max_frames}")
        msg = (f"{name}: {wanted} frames at {fps:g} fps exceed {why}; sampled {n} frames evenly instead "
               f"(one every {total_frames / video_fps / n:.2f} s)")
        if opts.strict:
            raise MediaError(msg, source=name, hint="raise max_total_tokens, lower fps, or cut the video")
        notes.append(msg)
    if n == 1:
        indices = [0]
    else:
        indices = torch.linspace(0, total_frames - 1, n).round().long().tolist()
    per_frame = min(opts.max_tokens, max(opts.min_tokens, opts.max_total_tokens // n))
    return VideoPlan(indices, [i / video_fps for i in indices], per_frame, notes)


def _open(source: Any):
    try:
        import av
    except ImportError:
        raise MediaError("reading videos needs PyAV", hint="pip install 'keye-agent[vision]'") from None
    name = source_name(source)
    if isinstance(source, (bytes, bytearray)):
        target: Any = io.BytesIO(bytes(source))
    else:
        s = str(source)
        if s.startswith(("http://", "https://", "data:")):
            raise MediaError(f"{name}: give a video as a file path or bytes (URLs are fetched by the backend)",
                             source=name)
        path = Path(s[7:] if s.startswith("file://") else s).expanduser()
        if not path.is_file():
            raise MediaError(f"video file not found: {path}", source=str(path), hint="check the path")
        target = str(path)
    try:
        container = av.open(target)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"{name}: not a readable video ({type(e).__name__}: {e})", source=name,
                         hint="give an MP4, WebM, MKV or AVI file") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{name}: the file has no video stream", source=name)
    return av, container


def read_video(source: Any, opts: VideoOptions = VideoOptions()) -> tuple[torch.Tensor, VideoPlan]:
    """Decode the planned frames: uint8 [T, 3, H, W] and the plan (indices, timestamps, budget, notes)."""
    av, container = _open(source)
    name = source_name(source)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        video_fps = float(rate) if rate else 0.0
        total = stream.frames
        if total <= 0:  # some containers do not record the count: count by decoding once
            total = sum(1 for _ in container.decode(stream))
            container.seek(0)
        plan = plan_frames(total, video_fps, opts, name)
        want = {}
        for k, i in enumerate(plan.indices):
            want.setdefault(i, []).append(k)
        frames: list[torch.Tensor | None] = [None] * len(plan.indices)
        last = max(plan.indices)
        for i, frame in enumerate(container.decode(stream)):
            if i in want:
                arr = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                for k in want[i]:
                    frames[k] = arr
            if i >= last:
                break
    except av.FFmpegError as e:
        raise MediaError(f"{name}: decoding failed ({type(e).__name__}: {e})", source=name) from None
    finally:
        container.close()
    got = [f for f in frames if f is not None]
    if len(got) != len(frames):
        # The container said more frames than it holds: keep what decoded and say so.
        keep = [k for k, f in enumerate(frames) if f is not None]
        if not keep:
            raise MediaError(f"{name}: no frame could be decoded", source=name)
        plan.notes.append(f"{name}: {len(frames) - len(keep)} of {len(frames)} planned frames could not be "
                          f"decoded (the file is shorter than its header says); kept {len(keep)}")
        plan.indices = [plan.indices[k] for k in keep]
        plan.timestamps = [plan.timestamps[k] for k in keep]
    return torch.stack(got), plan


def video_input(source: Any, cfg: VisionConfig, opts: VideoOptions = VideoOptions()) -> VisionInput:
    """Decode, sample, resize (bilinear, antialiased) and patch a video."""
    frames, plan = read_video(source, opts)
    return frames_input(frames, plan.timestamps, cfg, plan.tokens_per_frame, opts.min_tokens, plan.notes,
                        source_name(source))


def frames_input(frames: torch.Tensor, timestamps: list[float], cfg: VisionConfig, tokens_per_frame: int,
                 min_tokens: int = 64, notes: list[str] | None = None, source: str = "frames") -> VisionInput:
    """Frames uint8 [T, 3, H, W] already sampled -> a video VisionInput at ``tokens_per_frame`` at most."""
    T, _, H, W = frames.shape
    f2 = cfg.factor * cfg.factor
    h, w = smart_resize(H, W, cfg.factor, min_pixels=min_tokens * f2, max_pixels=tokens_per_frame * f2)
    x = frames.float()
    if (h, w) != (H, W):
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp_(0, 255)
    p = cfg.patch_size
    return VisionInput("video", patchify(x, cfg), [(1, h // p, w // p)] * T, timestamps=list(timestamps),
                       notes=list(notes or []), source=source)
