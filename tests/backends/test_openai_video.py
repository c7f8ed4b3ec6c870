"""OpenAIBackend with a video part against a real loopback server (only the model's answer is scripted): by
default the video goes as its frames (JPEG image_url parts, each after its time), subsampling said in the header;
with video_as_frames=False it goes as a video_url part. The video is written by the test with PyAV."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from openai_test_server import ChatServer, Reply, completion

from keye_agent.backends.openai import OpenAIBackend
from keye_agent.types import Message, TextPart, VideoPart


def _video(path: Path, seconds: float = 3.0, fps: int = 10) -> Path:
    import av

    with av.open(str(path), mode="w") as out:
        s = out.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for i in range(int(seconds * fps)):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((64, 96, 3), 8 * i, dtype=np.uint8), "rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def _ask(tmp_path: Path, **kw) -> list:
    video = _video(tmp_path / "clip.mp4")
    msg = Message.user([VideoPart(url=str(video)), TextPart(text="When does it get bright?")])
    with ChatServer([Reply(completion("At 2.5 s."))]) as server:
        b = OpenAIBackend("m", base_url=server.base_url, timeout=5.0, stream=False, **kw)
        turn = b.generate([msg])
        assert turn.text == "At 2.5 s."
        return server.requests[0]["messages"][0]["content"]


def test_video_goes_as_timestamped_frames(tmp_path):
    from PIL import Image

    parts = _ask(tmp_path)
    assert parts[0] == {"type": "text", "text": "Video clip.mp4: 6 frames."}
    stamps = [p["text"] for p in parts[1:-1] if p["type"] == "text"]
    assert stamps == ["0.0s:", "0.6s:", "1.2s:", "1.7s:", "2.3s:", "2.9s:"]
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(images) == 6 and all(u.startswith("data:image/jpeg;base64,") for u in images)
    levels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1])))).mean() for u in images]
    assert levels == sorted(levels)  # the frames in time order
    assert parts[-1] == {"type": "text", "text": "When does it get bright?"}


def test_subsampling_is_said_in_the_header(tmp_path, monkeypatch):
    from keye_agent.backends import _video_frames
    from keye_agent.model.vision import VideoOptions

    monkeypatch.setattr(_video_frames, "DEFAULT_FRAME_OPTIONS", VideoOptions(max_frames=3))
    monkeypatch.setattr(_video_frames.videos_as_frames, "__defaults__", (VideoOptions(max_frames=3),))
    parts = _ask(tmp_path)
    assert parts[0]["text"].startswith("Video clip.mp4: 3 frames (6 frames at 2 fps exceed max_frames=3; sampled 3")


def test_video_url_when_the_server_takes_video(tmp_path):
    parts = _ask(tmp_path, video_as_frames=False)
    assert parts[0]["type"] == "video_url" and parts[0]["video_url"]["url"].endswith("clip.mp4")
