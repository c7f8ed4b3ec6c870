"""The vision tower against transformers' SigLIP vision model (an independent implementation), float32.

The two coincide when the 2-D rotary embedding is off and every image has the native grid (the position table is
then used as it is; SigLIP would resize it bicubically, Keye bilinearly). With those, packed images must match
SigLIP's batched output to rel err <= 1e-5. Packing (several sizes in one sequence, no padding) must equal running
each image alone, with RoPE on; the projector is checked against a merge written out index by index.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from keye_agent.model.vision import VisionConfig, VisionTower  # noqa: E402


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B * (H/p) * (W/p), C, p, p] in raster order."""
    B, C, H, W = images.shape
    x = images.view(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, C, p, p)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    cfg = VisionConfig.from_name("tiny")
    sig_cfg = transformers.SiglipVisionConfig(
        hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
        hidden_act=cfg.hidden_act, layer_norm_eps=cfg.layer_norm_eps, attn_implementation="eager")
    sig = transformers.SiglipVisionModel(sig_cfg).eval()
    with torch.no_grad():
        for p in sig.parameters():  # norms away from 1/0 and biases non-zero, so a miswired one shows
            p.add_(0.05 * torch.randn_like(p))
    tower = VisionTower(cfg).eval()
    # transformers 5 flattens the vision model (4.x nested it under vision_model.)
    state = {k.removeprefix("vision_model."): v for k, v in sig.state_dict().items() if ".head." not in "." + k}
    missing, unexpected = tower.visual.vision_model.load_state_dict(state, strict=False)
    assert unexpected == [] and missing == ["embeddings.packing_position_embedding.weight"]
    return cfg, sig, tower


def test_matches_siglip_without_rope(pair):
    cfg, sig, tower = pair
    images = torch.randn(3, 3, cfg.image_size, cfg.image_size)
    side = cfg.image_size // cfg.patch_size
    with torch.no_grad():
        want = sig(pixel_values=images).last_hidden_state  # [3, side*side, D]
        got = tower.visual(patchify(images, cfg.patch_size), [(1, side, side)] * 3, use_rope=False)
    assert got.shape == (3 * side * side, cfg.hidden_size)
    assert _rel(got.view_as(want), want) <= 1e-5


def test_rope_changes_the_output(pair):
    cfg, _, tower = pair
    side = cfg.image_size // cfg.patch_size
    x = patchify(torch.randn(1, 3, cfg.image_size, cfg.image_size), cfg.patch_size)
    with torch.no_grad():
        assert _rel(tower.visual(x, [(1, side, side)]), tower.visual(x, [(1, side, side)], use_rope=False)) > 1e-3


@pytest.mark.parametrize("sizes", [[(2, 4), (4, 6), (2, 4)], [(6, 2), (6, 2), (6, 2), (4, 4)]])
def test_packing_equals_one_image_at_a_time(pair, sizes):
    cfg, _, tower = pair
    p = cfg.patch_size
    images = [torch.randn(1, 3, h * p, w * p) for h, w in sizes]
    packed = torch.cat([patchify(im, p) for im in images])
    grids = [(1, h, w) for h, w in sizes]
    with torch.no_grad():
        got = tower(packed, grids)
        alone = torch.cat([tower(patchify(im, p), [g]) for im, g in zip(images, grids, strict=True)])
        chunked = tower(packed, grids, max_patches=30)
    assert got.shape == (sum(h * w for h, w in sizes) // 4, cfg.text_hidden_size)
    assert _rel(got, alone) <= 1e-5 and _rel(chunked, alone) <= 1e-5


def test_video_grid_is_split_into_frames(pair):
    cfg, _, tower = pair
    frames = torch.randn(3, 3, 2 * cfg.patch_size, 4 * cfg.patch_size)
    x = patchify(frames, cfg.patch_size)
    with torch.no_grad():
        assert torch.allclose(tower(x, [(3, 2, 4)]), tower(x, [(1, 2, 4)] * 3))


def test_projector_merges_2x2_blocks_row_major(pair):
    cfg, _, tower = pair
    h, w, d = 4, 6, cfg.hidden_size
    x = torch.randn(h * w, d)
    merged = tower.mlp_AR.merge_patches(x, [(1, h, w)])
    for r in range(h // 2):
        for c in range(w // 2):
            want = torch.cat([x[(2 * r + i) * w + 2 * c + j] for i in range(2) for j in range(2)])
            assert torch.equal(merged[r * (w // 2) + c], want)


def test_interpolated_position_table_at_native_size_is_the_table(pair):
    cfg, _, tower = pair
    emb = tower.visual.vision_model.embeddings
    side = cfg.image_size // cfg.patch_size
    assert torch.equal(emb.position_table(side, side), emb.position_embedding.weight)
    assert emb.position_table(2, 8).shape == (16, cfg.hidden_size)


def test_bad_grids_are_named(pair):
    cfg, _, tower = pair
    with pytest.raises(ValueError, match="grids hold 8 patches, pixel_values has 9"):
        tower(torch.randn(9, 3, 14, 14), [(1, 2, 4)])
    with pytest.raises(ValueError, match="not divisible by the merge size"):
        tower(torch.randn(9, 3, 14, 14), [(1, 3, 3)])
