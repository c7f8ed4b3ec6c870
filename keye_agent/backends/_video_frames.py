"""Videos for servers that take images but not videos: each local video part becomes its sampled frames (JPEG
``ImagePart``s), each after a text part with its time, under a header naming the video and the sampling.

Sampling is the vision layer's (``model.vision.read_video``: 2 fps, evenly by index, at most ``max_frames``);
when fewer frames are sent than 2 fps asks, the header says so and the log warns: never a silent cut. Frames are
resized to the per-frame pixel budget of Keye-VL-2.0 (256 tokens of 28x28) before encoding.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from keye_agent.errors import MediaError
from keye_agent.model.vision.preprocess import smart_resize
from keye_agent.model.vision.video import VideoOptions, read_video
from keye_agent.types import ContentPart, ImagePart, Message, TextPart, VideoPart

__all__ = ["DEFAULT_FRAME_OPTIONS", "has_video", "videos_as_frames"]

log = logging.getLogger(__name__)

DEFAULT_FRAME_OPTIONS = VideoOptions(max_frames=32)
"""2 fps, at most 32 frames a video (each frame is a whole image on the wire)."""


def has_video(messages: Sequence[Message]) -> bool:
    return any(isinstance(m.content, list) and any(isinstance(p, VideoPart) for p in m.content) for m in messages)


def _frames(part: VideoPart, opts: VideoOptions) -> list[ContentPart]:
    from PIL import Image

    url = part.url
    if url.startswith(("http://", "https://")):
        raise MediaError(f"{url}: a remote video cannot be sent as frames", source=url,
                         hint="download it and attach the file, or pass video_as_frames=False if the server "
                              "takes video_url parts (vLLM, SGLang)")
    if part.fps:
        opts = replace(opts, fps=part.fps)
    frames, plan = read_video(url, opts)
    name = Path(url.removeprefix("file://")).name
    header = f"Video {name}: {len(plan.indices)} frames"
    if plan.notes:
        header += f" ({plan.notes[0].split(': ', 1)[-1]})"
        log.warning("%s", plan.notes[0])
    out: list[ContentPart] = [TextPart(text=header + ".")]
    _, _, H, W = frames.shape
    h, w = smart_resize(H, W, 28, min_pixels=opts.min_tokens * 784, max_pixels=opts.max_tokens * 784)
    for ts, frame in zip(plan.timestamps, frames, strict=True):
        im = Image.fromarray(frame.permute(1, 2, 0).numpy())
        if (w, h) != (W, H):
            im = im.resize((w, h), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
        out.append(TextPart(text=f"{ts:.1f}s:"))
        out.append(ImagePart(data=base64.b64encode(buf.getvalue()).decode("ascii"), mime_type="image/jpeg"))
    return out


def videos_as_frames(messages: Sequence[Message], opts: VideoOptions = DEFAULT_FRAME_OPTIONS) -> list[Message]:
    """``messages`` with every video part replaced by its frames (other messages unchanged)."""
    out = []
    for m in messages:
        if isinstance(m.content, list) and any(isinstance(p, VideoPart) for p in m.content):
            content: list[ContentPart] = []
            for p in m.content:
                content.extend(_frames(p, opts) if isinstance(p, VideoPart) else [p])
            m = m.model_copy(update={"content": content})
        out.append(m)
    return out
