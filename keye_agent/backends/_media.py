"""Images and videos of a conversation, for a local vision model: the parts in order, their bytes fetched, and
their placeholders in the prompt text.

URLs are fetched through the network guard (``tools.netguard``: public addresses only unless the policy allows
more) with a size cap; paths, ``file://`` URLs, ``data:`` URLs and inline base64 are read locally. Decoding and
resizing are the model layer's (``model.vision``). A tool message's images (a sandbox plot) are seen where the
tool result is.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from keye_agent.errors import MediaError, NetworkPolicyError
from keye_agent.tools.decoding import ACCEPT_ENCODING, DecodingError, read_decoded
from keye_agent.tools.netguard import NetPolicy, guarded_async_client
from keye_agent.types import ImagePart, Message, TextPart, VideoPart

__all__ = ["IMAGE_PLACEHOLDER", "MAX_FETCH_BYTES", "MediaItem", "collect_media", "fetch_media", "message_text",
           "resolve_local"]

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
MAX_FETCH_BYTES = 256 * 1024 * 1024


@dataclass
class MediaItem:
    """One image or video part; ``source`` is what the model layer reads (bytes or a local path or data URL)."""

    kind: str
    part: ImagePart | VideoPart
    source: Any = None
    fps: float | None = None


def message_text(m: Message) -> str:
    """The text of a message with a placeholder where each image or video part sits."""
    if not isinstance(m.content, list):
        return m.content or ""
    out = []
    for p in m.content:
        if isinstance(p, TextPart):
            out.append(p.text)
        elif isinstance(p, ImagePart):
            out.append(IMAGE_PLACEHOLDER)
        elif isinstance(p, VideoPart):
            out.append(VIDEO_PLACEHOLDER)
    return "".join(out)


def collect_media(messages: Sequence[Message]) -> list[MediaItem]:
    """The image and video parts of ``messages``, in prompt order."""
    items: list[MediaItem] = []
    for m in messages:
        if isinstance(m.content, list):
            for p in m.content:
                if isinstance(p, ImagePart):
                    items.append(MediaItem("image", p))
                elif isinstance(p, VideoPart):
                    items.append(MediaItem("video", p, fps=p.fps))
    return items


def resolve_local(it: MediaItem) -> bool:
    """Fill ``it.source`` when the part needs no network (inline data, a path, a data URL); False for http(s)."""
    p = it.part
    if isinstance(p, ImagePart) and p.data:
        try:
            it.source = base64.b64decode(p.data, validate=True)
        except ValueError:
            raise MediaError("an image part holds invalid base64 data", source="inline data") from None
        return True
    url = p.url or ""
    if not url:
        raise MediaError(f"an {it.kind} part has neither url nor data", source="part")
    if url.startswith(("http://", "https://")):
        return False
    it.source = url
    return True


async def fetch_media(items: Sequence[MediaItem], policy: NetPolicy | None = None, timeout: float = 30.0) -> None:
    """Fill each item's ``source``: inline data decoded, URLs fetched through the guard, paths left as paths."""
    policy = policy or NetPolicy()
    remote = [it for it in items if not resolve_local(it)]
    if not remote:
        return
    async with guarded_async_client(policy, timeout=timeout, follow_redirects=True,
                                    headers={"Accept-Encoding": ACCEPT_ENCODING}) as client:
        for it in remote:
            it.source = await _download(client, it.part.url or "")


async def _download(client: httpx.AsyncClient, url: str) -> bytes:
    try:
        async with client.stream("GET", url) as r:
            if r.status_code != 200:
                raise MediaError(f"{url}: HTTP {r.status_code}", source=url, hint="check the URL")
            try:  # decoded under the cap as it streams, every Content-Encoding layer counted
                data, over = await read_decoded(r, MAX_FETCH_BYTES)
            except DecodingError as e:
                raise MediaError(f"{url}: {e}", source=url) from None
            if over:
                raise MediaError(f"{url}: more than {MAX_FETCH_BYTES} bytes", source=url,
                                 hint="download it and pass a smaller file")
            return data
    except NetworkPolicyError:
        raise
    except httpx.HTTPError as e:
        raise MediaError(f"{url}: cannot fetch ({type(e).__name__}: {e})", source=url) from None
