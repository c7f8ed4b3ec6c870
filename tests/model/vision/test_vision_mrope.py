"""3-D MRoPE position ids against transformers' Qwen2-VL ``get_rope_index`` on the same image/video grids, and the
Keye layout (one run per video frame, timestamp text between) against positions written out by hand."""

from __future__ import annotations

import types

import pytest
import torch

from keye_agent.model.rope import mrope_positions

qwen2_vl = pytest.importorskip("transformers.models.qwen2_vl.modeling_qwen2_vl")

IMG, VID, TXT = 900, 901, 5


def reference(ids: list[int], image_grids, video_grids):
    """transformers' get_rope_index, called on a stand-in for the model (it reads one config field)."""
    model_cls = qwen2_vl.Qwen2VLModel
    fake = types.SimpleNamespace(
        config=types.SimpleNamespace(vision_config=types.SimpleNamespace(spatial_merge_size=2)),
        get_vision_position_ids=lambda *a, **k: model_cls.get_vision_position_ids(None, *a, **k))
    x = torch.tensor([ids])
    kinds = torch.tensor([[1 if t == IMG else 2 if t == VID else 0 for t in ids]])
    pos, delta = model_cls.get_rope_index(
        fake, x, kinds, torch.tensor(image_grids) if image_grids else None,
        torch.tensor(video_grids) if video_grids else None)
    return pos[:, 0], int(delta)


def build(segments):
    """segments: ("text", n) | ("image", grid) | ("video", grid) -> ids, image grids, video grids, grids in order."""
    ids, img, vid, order = [], [], [], []
    for kind, x in segments:
        if kind == "text":
            ids += [TXT] * x
        else:
            t, h, w = x
            ids += [IMG if kind == "image" else VID] * (t * h * w // 4)
            (img if kind == "image" else vid).append(list(x))
            order.append(x)
    return ids, img, vid, order


CASES = [
    [("text", 3), ("image", (1, 4, 6)), ("text", 5)],
    [("text", 2), ("image", (1, 8, 4)), ("text", 1), ("image", (1, 2, 2)), ("text", 4)],
    [("text", 4), ("video", (3, 6, 6)), ("text", 2)],  # t <= max(h, w) / 2: the two conventions agree
    [("image", (1, 6, 10)), ("text", 2), ("video", (2, 4, 4)), ("text", 3), ("image", (1, 2, 4))],
]


@pytest.mark.parametrize("segments", CASES)
def test_against_qwen2_vl_get_rope_index(segments):
    ids, img, vid, order = build(segments)
    want, want_delta = reference(ids, img, vid)
    got, delta = mrope_positions(ids, order, {IMG, VID})
    assert torch.equal(got, want)
    assert delta == want_delta


def test_keye_video_layout_one_run_per_frame():
    # <vs> <frame>0.0 [4 pads] <frame>0.5 [4 pads] <ve> text: frames 4x4 patches -> 2x2 tokens each.
    F, S, E = 7, 8, 9
    ids = [TXT, S, F, TXT, TXT, TXT] + [VID] * 4 + [F, TXT, TXT, TXT] + [VID] * 4 + [E, TXT]
    got, delta = mrope_positions(ids, [(1, 4, 4), (1, 4, 4)], {VID})
    text = list(range(6))
    frame1 = [[6, 6, 6, 6], [6, 6, 7, 7], [6, 7, 6, 7]]
    mid = [8, 9, 10, 11]
    frame2 = [[12, 12, 12, 12], [12, 12, 13, 13], [12, 13, 12, 13]]
    want = torch.tensor([text + frame1[i] + mid + frame2[i] + [14, 15] for i in range(3)])
    assert torch.equal(got, want)
    assert delta == 16 - len(ids)
    # And transformers agrees when each frame is given as a one-frame video.
    kinds_ref, _ = reference(ids, None, [[1, 4, 4], [1, 4, 4]])
    assert torch.equal(got, kinds_ref)


def test_text_only_is_plain_positions():
    got, delta = mrope_positions([1, 2, 3], [], {IMG})
    assert torch.equal(got, torch.arange(3).expand(3, 3)) and delta == 0


def test_grid_mismatch_is_named():
    with pytest.raises(ValueError, match="needs 6 vision tokens"):
        mrope_positions([IMG] * 5, [(1, 4, 6)], {IMG})
    with pytest.raises(ValueError, match="no grid left"):
        mrope_positions([IMG] * 4, [], {IMG})
    with pytest.raises(ValueError, match="prompt holds fewer vision runs"):
        mrope_positions([IMG] * 4, [(1, 4, 4), (1, 4, 4)], {IMG})
