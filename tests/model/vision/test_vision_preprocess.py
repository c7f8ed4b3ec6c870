"""Image preprocessing against the fork's documented resize rule, worked out by hand on a table of sizes, and the
inputs it accepts (bytes, path, data URL) and refuses (typed MediaError)."""

from __future__ import annotations

import base64

import pytest
import torch

from keye_agent.errors import MediaError
from keye_agent.model.vision import VisionConfig, image_input, smart_resize

V256 = 256 * 28 * 28  # a video frame's budget at 256 tokens
V64 = 64 * 28 * 28


# (height, width, min_pixels, max_pixels) -> expected (h, w); each row derived by hand from the rule:
# round sides to 28; over max: scale by sqrt(area/max) and floor; under min: scale by sqrt(min/area) and ceil.
TABLE = [
    ((100, 100, 3136, 16056320), (112, 112)),      # 3.57 -> 4 patches of 28 each side
    ((10, 10, 3136, 16056320), (56, 56)),          # rounds to 28x28 = 784 < 3136: x5.6 then ceil
    ((480, 640, 3136, V256), (364, 504)),          # 476x644 > 200704: /1.2372 -> 387.98, 517.31 -> floor
    ((300, 7000, 3136, 16056320), (308, 7000)),    # elongated but under the ratio limit
    ((50, 60, V64, V256), (224, 252)),             # 56x56 < 50176: x4.0897 -> 204.5, 245.4 -> ceil
    ((4000, 3000, 3136, 16056320), (4004, 2996)),  # fits after rounding
    ((8000, 6000, 3136, 16056320), (4620, 3444)),  # 48e6 > 16.06e6: /1.729 -> 4626.9, 3470.2 -> floor
]


@pytest.mark.parametrize("args,want", TABLE)
def test_smart_resize_table(args, want):
    h, w, lo, hi = args
    got = smart_resize(h, w, 28, lo, hi)
    assert got == want
    assert got[0] % 28 == 0 and got[1] % 28 == 0 and got[0] * got[1] <= hi


def test_extreme_aspect_ratio_is_refused():
    with pytest.raises(MediaError, match="aspect ratio 300 is above 200"):
        smart_resize(10, 3000)


@pytest.fixture(scope="module")
def cfg():
    return VisionConfig.from_name("tiny")


def test_image_from_bytes_path_and_data_url_agree(tmp_path, cfg, png):
    data = png(90, 60)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    a, b, c = (image_input(s, cfg) for s in (data, str(path), url))
    assert a.grids == [(1, 4, 6)]  # 60x90 -> 56x84 -> 4x6 patches of 14
    assert a.num_tokens == 6 and a.pixel_values.shape == (24, 3, 14, 14)
    assert torch.equal(a.pixel_values, b.pixel_values) and torch.equal(a.pixel_values, c.pixel_values)
    assert float(a.pixel_values.abs().max()) <= 1.0  # normalised with mean 0.5, std 0.5


def test_patches_are_raster_order(cfg):
    import numpy as np
    from PIL import Image

    arr = np.zeros((56, 112, 3), dtype=np.uint8)
    arr[:14, 14:28] = 255  # patch (row 0, column 1) white
    inp = image_input(Image.fromarray(arr), cfg)
    assert inp.grids == [(1, 4, 8)]
    white = [i for i in range(32) if float(inp.pixel_values[i].mean()) > 0.9]
    assert white == [1]


def test_downscale_past_the_budget_is_noted(cfg, png):
    inp = image_input(png(400, 300), cfg, max_pixels=64 * 28 * 28)
    assert inp.num_tokens <= 64 and inp.notes and "downscaled" in inp.notes[0]
    assert image_input(png(56, 56), cfg).notes == []


@pytest.mark.parametrize("source,match", [
    (b"not an image at all", "not a readable image"),
    ("/nonexistent/x.png", "media file not found"),
    ("data:image/png;base64,@@@", "invalid base64"),
    ("data:image/png,raw", "not base64"),
    ("https://example.com/a.png", "fetched by the backend"),
])
def test_bad_images_raise_media_error(cfg, source, match):
    with pytest.raises(MediaError, match=match):
        image_input(source, cfg)


def test_truncated_png_is_a_media_error(cfg, png):
    with pytest.raises(MediaError, match="not a readable image"):
        image_input(png(64, 64)[:100], cfg)
