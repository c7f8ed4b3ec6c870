"""Video sampling and decoding (PyAV) on videos the tests write, against the fork's rules: 2 fps by default,
frames evenly by index, timestamps index / fps, 64-256 tokens a frame under a total budget, noted subsampling."""

from __future__ import annotations

import pytest
import torch

from keye_agent.errors import MediaError
from keye_agent.model.vision import VideoOptions, VisionConfig, plan_frames, read_video, video_input


def test_plan_at_2_fps():
    plan = plan_frames(300, 30.0)  # 10 s at 30 fps
    assert len(plan.indices) == 20 and plan.indices[0] == 0 and plan.indices[-1] == 299
    assert plan.indices == torch.linspace(0, 299, 20).round().long().tolist()
    assert plan.timestamps == [i / 30.0 for i in plan.indices]
    assert plan.tokens_per_frame == 256 and plan.notes == []


def test_plan_never_above_the_file_rate_and_at_least_two_frames():
    assert len(plan_frames(10, 1.0).indices) == 10  # 1 fps file: 10 frames, not 20
    assert len(plan_frames(3, 30.0).indices) == 2  # 0.1 s: int(0.2) = 0 -> min_frames 2


def test_budget_lowers_tokens_per_frame_then_subsamples_with_a_note():
    plan = plan_frames(600, 10.0, VideoOptions(max_total_tokens=20 * 128))  # 60 s -> 120 frames wanted
    assert len(plan.indices) == 40  # 2560 // 64
    assert plan.tokens_per_frame == 64
    assert plan.notes and "120 frames at 2 fps exceed the 2560-token budget" in plan.notes[0]
    mid = plan_frames(600, 10.0, VideoOptions(max_total_tokens=120 * 100))
    assert len(mid.indices) == 120 and mid.tokens_per_frame == 100 and mid.notes == []
    with pytest.raises(MediaError, match="exceed the 2560-token budget"):
        plan_frames(600, 10.0, VideoOptions(max_total_tokens=20 * 128, strict=True))


def test_read_video_samples_in_order(make_video):
    path = make_video(3.0, fps=10)  # 30 frames, brightening
    frames, plan = read_video(path)
    assert frames.shape == (6, 3, 64, 96) and frames.dtype == torch.uint8
    assert plan.indices == [0, 6, 12, 17, 23, 29]
    assert plan.timestamps == pytest.approx([0.0, 0.6, 1.2, 1.7, 2.3, 2.9])
    levels = frames.float().mean(dim=(1, 2, 3))
    assert bool((levels[1:] > levels[:-1]).all())  # decoded frames are the sampled ones, in order


def test_video_input_sizes_frames_to_the_budget(make_video):
    cfg = VisionConfig.from_name("tiny")
    inp = video_input(make_video(2.0, fps=10, size=(320, 240)), cfg, VideoOptions(max_total_tokens=4 * 80))
    assert len(inp.grids) == 4 and len(set(inp.grids)) == 1
    assert 64 <= inp.frame_tokens[0] <= 80
    assert inp.pixel_values.shape[0] == sum(h * w for _, h, w in inp.grids)
    assert inp.timestamps == pytest.approx([0.0, 0.6, 1.3, 1.9], abs=0.05)


def test_video_from_bytes_equals_from_path(make_video):
    path = make_video(1.0)
    a, _ = read_video(path)
    b, _ = read_video(path.read_bytes())
    assert torch.equal(a, b)


@pytest.mark.parametrize("payload,match", [(b"\x00" * 1000, "not a readable video"),
                                            ("/nonexistent/v.mp4", "video file not found")])
def test_bad_videos_raise_media_error(payload, match):
    with pytest.raises(MediaError, match=match):
        read_video(payload)


def test_a_still_image_reads_as_a_one_frame_video(tmp_path, png):
    p = tmp_path / "x.png"
    p.write_bytes(png(32, 32))
    frames, plan = read_video(p)  # FFmpeg opens a still as a one-frame stream: one frame, not a failure
    assert frames.shape == (1, 3, 32, 32) and plan.indices == [0] and plan.timestamps == [0.0]
