"""Fixtures of the vision tests: media written by the tests themselves (no downloads), PNG images with Pillow and
MPEG-4 videos with PyAV."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_video(path: Path, seconds: float, fps: int = 10, size: tuple[int, int] = (96, 64)) -> Path:
    """An MPEG-4 video whose frame i is a flat grey of level 20 + 200 * i / (n - 1), so order is visible."""
    import av

    w, h = size
    n = int(seconds * fps)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.bit_rate = 2_000_000
        for i in range(n):
            level = int(20 + 200 * i / max(n - 1, 1))
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), level, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture
def png():
    """``png(width, height, seed=0)`` -> PNG bytes of random pixels."""
    return png_bytes


@pytest.fixture
def make_video(tmp_path):
    """``make_video(seconds, fps=10, size=(96, 64), name="v.mp4")`` -> path of a video with brightening frames."""
    def make(seconds: float, fps: int = 10, size: tuple[int, int] = (96, 64), name: str = "v.mp4") -> Path:
        return write_video(tmp_path / name, seconds, fps, size)
    return make
