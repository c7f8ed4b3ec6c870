"""KeyeBackend with images and videos on the tiny-vl preset (real model, real vision tower, fp32 random weights,
CPU; the stand-in tokenizer): the media reach the model exactly as the model layer's own multimodal generation
takes them, a text-only call after a multimodal one is not served from a stale cache, URLs go through the network
guard (a real HTTP server on loopback), subsampling is noted in the turn, bad media raise typed errors."""

from __future__ import annotations

import base64
import io
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from keye_agent.backends.keye import KeyeBackend
from keye_agent.errors import MediaError, NetworkPolicyError
from keye_agent.model.vision import VideoOptions, VisionTokens, build_prompt, embed_prompt
from keye_agent.tools.netguard import NetPolicy
from keye_agent.types import GenerationSettings, ImagePart, Message, TextPart, VideoPart


def png_bytes(w: int, h: int, seed: int = 0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_video(path, seconds: float, fps: int = 10, size=(96, 64)):
    import av

    with av.open(str(path), mode="w") as out:
        s = out.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(int(seconds * fps)):
            arr = np.full((size[1], size[0], 3), 10 + 7 * i % 240, dtype=np.uint8)
            for p in s.encode(__import__("av").VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def backend():
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in tokenizer's warning
        return KeyeBackend("tiny-vl", random_weights=True, device="cpu",
                           video_options=VideoOptions(max_total_tokens=4 * 64, min_tokens=4, max_tokens=64))


def greedy(n: int) -> GenerationSettings:
    return GenerationSettings(max_tokens=n, temperature=0.0)


def test_media_reach_the_model_as_the_model_layer_takes_them(backend, tmp_path):
    video = write_video(tmp_path / "v.mp4", 1.5)
    data = png_bytes(84, 56)
    msg = Message.user([TextPart(text="Look: "), ImagePart(data=base64.b64encode(data).decode()),
                        TextPart(text=" and "), VideoPart(url=str(video)), TextPart(text=" What changes?")])
    turn = backend.generate([msg], settings=greedy(5))
    got = backend.last_result.token_ids
    # The same prompt built by hand through the model layer.
    prompt_ids = backend.tokenizer.encode(backend.render([msg]))
    inputs = backend._vision_inputs(_fetched(backend, [msg]))
    mm = build_prompt(prompt_ids, inputs, VisionTokens.from_tokenizer(backend.tokenizer), backend.tokenizer.encode)
    # Greedy by full forwards (no cache) over prompt + answer so far, ids past the tokenizer's vocabulary masked
    # as the backend masks them: checks the cached decode at position slot + delta too.
    valid = min(backend.tokenizer.vocab_size, backend.vocab_size)
    model, want = backend.model, []
    with torch.no_grad():
        base = embed_prompt(model, backend.vision, mm)
        T = len(mm.input_ids)
        for _ in range(len(got)):
            gen = torch.tensor([want], dtype=torch.long)
            x = torch.cat([base, model.model.embed_tokens(gen)], dim=1)
            pos = torch.cat([mm.positions, (torch.arange(T, T + len(want)) + mm.rope_delta).expand(3, -1)], dim=1)
            logits = model(torch.tensor([mm.input_ids + want]), position_ids=pos[:, None], input_embeds=x)[0, -1]
            want.append(int(logits[:valid].argmax()))
    assert got and got == want
    assert turn.usage.prompt_tokens == len(mm.input_ids) > len(prompt_ids) + 6 + 3 * 4
    assert backend.count_tokens([msg]) >= len(mm.input_ids) - 20  # placeholders counted with their pads


def _fetched(backend, messages):
    from keye_agent.backends._media import collect_media, resolve_local

    items = collect_media(messages)
    for it in items:
        assert resolve_local(it)
    return items


def test_text_after_media_is_not_served_from_the_media_cache(backend):
    text = [Message.user("Hello there, what is the weather?")]
    with_image = [Message.user([ImagePart(data=base64.b64encode(png_bytes(56, 56, 3)).decode()),
                                TextPart(text="Hello there, what is the weather?")])]
    backend.reset_cache()
    backend.generate(text, settings=greedy(4))
    cold = backend.last_result.token_ids
    backend.generate(with_image, settings=greedy(4))
    backend.generate(text, settings=greedy(4))
    assert backend.last_result.token_ids == cold and backend.last_result.reused_tokens == 0


def test_next_step_with_the_same_video_reuses_its_prefix(backend, tmp_path):
    from keye_agent.types import ToolCall

    video = write_video(tmp_path / "r.mp4", 1.5)
    first = [Message.user([VideoPart(url=str(video)), TextPart(text="Describe it.")])]
    later = first + [Message.assistant(None, [ToolCall(id="c1", name="scan", arguments={})]),
                     Message.tool("c1", "scan", "brightness rises at 0.9 s")]
    backend.reset_cache()
    backend.generate(first, settings=greedy(3))
    backend.generate(later, settings=greedy(4))
    warm = backend.last_result
    backend.reset_cache()
    backend.generate(later, settings=greedy(4))
    cold = backend.last_result
    assert cold.reused_tokens == 0 and warm.reused_tokens > 3 * 4  # the video's tokens were not run again
    assert warm.token_ids == cold.token_ids
    other = write_video(tmp_path / "s.mp4", 1.5, fps=5)  # another video: nothing reused
    backend.generate([Message.user([VideoPart(url=str(other)), TextPart(text="Describe it.")])], settings=greedy(2))
    assert backend.last_result.reused_tokens == 0


def test_subsampled_video_is_noted_in_the_turn(backend, tmp_path):
    video = write_video(tmp_path / "long.mp4", 4.0)  # 8 frames at 2 fps; the budget holds 4 * 64 / 4 = 64 frames
    b = backend
    old = b.video_options
    b.video_options = VideoOptions(max_total_tokens=3 * 4, min_tokens=4, max_tokens=4)
    try:
        turn = b.generate([Message.user([VideoPart(url=str(video)), TextPart(text="Summarise.")])], settings=greedy(2))
    finally:
        b.video_options = old
    assert turn.notes and "sampled 3 frames evenly" in turn.notes[0]


class _Server(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


@pytest.fixture
def image_server():
    _Server.body = png_bytes(56, 56, 9)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/a.png"
    srv.shutdown()
    srv.server_close()


def test_image_urls_go_through_the_network_guard(backend, image_server):
    msg = [Message.user([ImagePart(url=image_server), TextPart(text="What is it?")])]
    with pytest.raises(NetworkPolicyError):
        backend.generate(msg, settings=greedy(2))  # loopback is refused by default
    backend.net_policy = NetPolicy(allow_loopback=True)
    try:
        turn = backend.generate(msg, settings=greedy(2))
    finally:
        backend.net_policy = None
    assert turn.usage.prompt_tokens > len(backend.tokenizer.encode(backend.render(msg)))


@pytest.mark.parametrize("part,match", [
    (ImagePart(data=base64.b64encode(b"garbage").decode()), "not a readable image"),
    (VideoPart(url="/nonexistent/clip.mp4"), "video file not found"),
])
def test_bad_media_raise_media_error(backend, part, match):
    with pytest.raises(MediaError, match=match):
        backend.generate([Message.user([part, TextPart(text="?")])], settings=greedy(2))
