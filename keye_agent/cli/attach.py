"""Files a user attaches to a message (``keye-agent run --image/--video``, the REPL's ``/attach``) as message parts."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from keye_agent.errors import ConfigError
from keye_agent.types import ContentPart, ImagePart, Message, TextPart, VideoPart

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "attachment", "with_attachments"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg")


def attachment(path: str | Path, kind: str | None = None) -> ImagePart | VideoPart:
    """An image or video part for a local file; ``kind`` ("image"/"video") or the file's suffix decides which."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"cannot attach {p}: no such file", hint="check the path")
    suffix = p.suffix.lower()
    if kind is None:
        if suffix in IMAGE_SUFFIXES:
            kind = "image"
        elif suffix in VIDEO_SUFFIXES:
            kind = "video"
        else:
            raise ConfigError(f"cannot attach {p}: {suffix or 'no suffix'} is neither an image nor a video",
                              hint=f"images: {', '.join(IMAGE_SUFFIXES)}; videos: {', '.join(VIDEO_SUFFIXES)}")
    else:  # asked for as one kind (--image, --video): found out here, before any model loads, not at decode time
        known, what = (IMAGE_SUFFIXES, "an image") if kind == "image" else (VIDEO_SUFFIXES, "a video")
        if suffix not in known:
            raise ConfigError(f"cannot attach {p} as {what}: {suffix or 'no suffix'} is not {what} file type",
                              hint=f"{kind}s: {', '.join(known)} (rename the file if it is one)")
    if kind == "image":
        return ImagePart(url=str(p.resolve()), mime_type=mimetypes.guess_type(p.name)[0] or "image/png")
    return VideoPart(url=str(p.resolve()))


def with_attachments(text: str, parts: list[ImagePart | VideoPart]) -> str | Message:
    """The task as a user message with the attachments before its text (plain text when there are none)."""
    if not parts:
        return text
    content: list[ContentPart] = [*parts, TextPart(text=text)]
    return Message.user(content)
