"""Image preprocessing as the Keye fork does it: smart resize to multiples of 28 under pixel budgets, rescale and
normalise, cut into 14x14 patches in raster order.

Sources: bytes, a file path (or ``file://`` URL), a ``data:`` URL (base64), or a ``PIL.Image``. HTTP(S) URLs are
fetched by the caller (the backends do it through the network guard; this layer does no network I/O).
Every failure is a :class:`~keye_agent.errors.MediaError` naming the input and the fix.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from keye_agent.errors import MediaError
from keye_agent.model.vision.config import VisionConfig

__all__ = ["IMAGE_MAX_PIXELS", "IMAGE_MIN_PIXELS", "MAX_RATIO", "VisionInput", "image_input", "load_image",
           "patchify", "smart_resize", "source_name"]

# The fork's defaults (multimodal/processors/keye.py): 4 to 20480 tokens of 28x28 pixels per image.
IMAGE_MIN_PIXELS = 4 * 28 * 28
IMAGE_MAX_PIXELS = 20480 * 28 * 28
MAX_RATIO = 200
"""Longest side / shortest side above this is refused (the fork's rule)."""
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class VisionInput:
    """One image or video, ready for the tower: patches, one (1, h, w) grid per frame, and what the prompt needs."""

    kind: str
    """"image" or "video"."""
    pixel_values: torch.Tensor
    """[N, C, p, p] float32, normalised, frames one after the other, raster order within a frame."""
    grids: list[tuple[int, int, int]]
    """(1, h, w) in patches for each frame."""
    timestamps: list[float] | None = None
    """Seconds of each frame (videos)."""
    notes: list[str] = field(default_factory=list)
    """What was changed to fit the budgets (subsampled frames, a smaller resolution): shown, never silent."""
    source: str = ""

    @property
    def frame_tokens(self) -> list[int]:
        """Language-model tokens of each frame (after the 2x2 merge)."""
        return [h * w // 4 for _, h, w in self.grids]

    @property
    def num_tokens(self) -> int:
        return sum(self.frame_tokens)


def source_name(source: Any) -> str:
    """A short printable name of an input: the path, "bytes", or the head of a data URL (never its payload)."""
    if isinstance(source, (bytes, bytearray)):
        return f"bytes ({len(source)} B)"
    if isinstance(source, (str, Path)):
        s = str(source)
        return s.split(",", 1)[0][:60] + ",..." if s.startswith("data:") else s
    return type(source).__name__


def round_by(x: float, f: int) -> int:
    return round(x / f) * f


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = IMAGE_MIN_PIXELS,
                 max_pixels: int = IMAGE_MAX_PIXELS) -> tuple[int, int]:
    """(h, w), both multiples of ``factor``, area within [min_pixels, max_pixels], aspect kept as close as may be.

    The rule of the fork: round each side to the factor; if the area is over the budget scale both sides by
    sqrt(area / max) and floor to the factor, if under scale up by sqrt(min / area) and ceil; never below factor.
    """
    if height < 1 or width < 1:
        raise MediaError(f"image of {width}x{height} pixels has no area")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise MediaError(f"image of {width}x{height} pixels: aspect ratio {max(height, width) / min(height, width):.0f}"
                         f" is above {MAX_RATIO}", hint="crop the image to a less elongated region")
    h = max(factor, round_by(height, factor))
    w = max(factor, round_by(width, factor))
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = math.floor(height / beta / factor) * factor
        w = math.floor(width / beta / factor) * factor
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return max(h, factor), max(w, factor)


def _read_bytes(source: Any) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    s = str(source)
    if s.startswith("data:"):
        head, sep, payload = s.partition(",")
        if not sep or ";base64" not in head:
            raise MediaError(f"data URL {source_name(s)} is not base64 (expected data:<mime>;base64,<data>)",
                             source=source_name(s))
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise MediaError(f"data URL {source_name(s)} holds invalid base64", source=source_name(s)) from None
    if s.startswith(("http://", "https://")):
        raise MediaError(f"{s}: URLs are fetched by the backend (through the network guard), not by the model layer",
                         source=s, hint="pass the bytes, or give the URL to an agent backend")
    path = Path(s[7:] if s.startswith("file://") else s).expanduser()
    if not path.is_file():
        raise MediaError(f"media file not found: {path}", source=str(path), hint="check the path")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise MediaError(f"{path}: {size} bytes is above the {MAX_FILE_BYTES}-byte limit for an image",
                         source=str(path), hint="downscale or recompress the image")
    return path.read_bytes()


def load_image(source: Any) -> Any:
    """A ``PIL.Image`` in RGB from bytes, a path, a data URL or an image."""
    try:
        from PIL import Image
    except ImportError:
        raise MediaError("reading images needs Pillow", hint="pip install 'keye-agent[vision]'") from None
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    data = _read_bytes(source)
    name = source_name(source)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except Image.DecompressionBombError as e:
        raise MediaError(f"{name}: image too large to decode safely ({e})", source=name,
                         hint="downscale the image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{name}: not a readable image ({type(e).__name__}: {e})", source=name,
                         hint="give a PNG, JPEG, WebP, GIF or BMP file") from None


def patchify(frames: torch.Tensor, cfg: VisionConfig) -> torch.Tensor:
    """[T, C, H, W] float pixels in 0..255 -> normalised patches [T * H/p * W/p, C, p, p], raster per frame."""
    T, C, H, W = frames.shape
    p = cfg.patch_size
    mean = torch.tensor(cfg.image_mean, dtype=torch.float32).view(1, C, 1, 1)
    std = torch.tensor(cfg.image_std, dtype=torch.float32).view(1, C, 1, 1)
    x = (frames.float() / 255.0 - mean) / std
    x = x.view(T, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, C, p, p).contiguous()


def image_input(source: Any, cfg: VisionConfig, min_pixels: int = IMAGE_MIN_PIXELS,
                max_pixels: int = IMAGE_MAX_PIXELS) -> VisionInput:
    """Read, resize (bicubic, as PIL's default in the fork) and patch one image."""
    import numpy as np
    from PIL import Image

    im = load_image(source)
    w0, h0 = im.size
    h, w = smart_resize(h0, w0, cfg.factor, min_pixels, max_pixels)
    if (w, h) != (w0, h0):
        im = im.resize((w, h), Image.Resampling.BICUBIC)
    arr = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)[None]
    p = cfg.patch_size
    notes = []
    if max(cfg.factor, round_by(h0, cfg.factor)) * max(cfg.factor, round_by(w0, cfg.factor)) > max_pixels:
        notes.append(f"image {w0}x{h0} downscaled to {w}x{h} to fit max_pixels={max_pixels}")
    return VisionInput("image", patchify(arr, cfg), [(1, h // p, w // p)], notes=notes, source=source_name(source))
