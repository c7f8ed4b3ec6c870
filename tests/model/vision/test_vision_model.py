"""The vision tower inside the model: a checkpoint in the fork's layout, written here, loads and runs; a prompt
with an image and a video generates, and its cached decode steps (at position length + delta) agree with one full
forward over prompt and answer (no cache), which checks the 3-D positions end to end."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from keye_agent.model import KeyeConfig, build_model
from keye_agent.model.loading import load_checkpoint
from keye_agent.model.sampling import SamplingParams
from keye_agent.model.vision import (
    VideoOptions,
    VisionTokens,
    build_prompt,
    build_tower,
    embed_prompt,
    image_input,
    stream_generate_multimodal,
    tower_config,
    video_input,
)

TOK = VisionTokens(image_pad=2000, video_pad=2001, vision_start=2002, vision_end=2003)
FRAME = 2004


def encode(text: str) -> list[int]:
    """Stand-in tokenizer: <|frame|> is one id, every other character its code point."""
    assert text.startswith("<|frame|>")
    return [FRAME] + [ord(c) for c in text[len("<|frame|>"):]]


@pytest.fixture(scope="module")
def parts():
    cfg = KeyeConfig.from_name("tiny-vl")
    model = build_model(cfg, dtype=torch.float32, seed=3)
    tower = build_tower(tower_config(cfg), seed=4)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # norms and biases away from 1 / 0, so a miswired one shows
        for name, p in tower.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return cfg, model, tower


def prompt_for(cfg, png, video_path, seed=0):
    vc = tower_config(cfg)
    img = image_input(png(84, 56, seed), vc)
    vid = video_input(video_path, vc, VideoOptions(max_total_tokens=3 * 64, min_tokens=4, max_tokens=64))
    ids = [10, 11, TOK.vision_start, TOK.image_pad, TOK.vision_end, 12, TOK.vision_start, TOK.video_pad,
           TOK.vision_end, 13, 14]
    return build_prompt(ids, [img, vid], TOK, encode)


def test_prompt_layout(parts, png, make_video):
    cfg, _, _ = parts
    p = prompt_for(cfg, png, make_video(1.5, fps=10))
    assert p.input_ids.count(TOK.image_pad) == 6  # 56x84 -> 4x6 patches -> 2x3 tokens
    assert p.input_ids.count(FRAME) == 3
    i = p.input_ids.index(FRAME)
    assert p.input_ids[i:i + 4] == [FRAME, ord("0"), ord("."), ord("0")]
    assert p.positions.shape == (3, len(p.input_ids)) and p.rope_delta < 0


def test_generation_agrees_with_a_full_forward(parts, png, make_video):
    cfg, model, tower = parts
    p = prompt_for(cfg, png, make_video(1.5, fps=10))
    it = stream_generate_multimodal(model, tower, p, 6, SamplingParams(temperature=0.0), stop_token_ids=[])
    answer = list(it)
    assert len(answer) == 6
    T = len(p.input_ids)
    with torch.no_grad():
        x = embed_prompt(model, tower, p)
        ids = torch.tensor([p.input_ids + answer[:-1]])
        x = torch.cat([x, model.model.embed_tokens(ids[:, T:])], dim=1)
        tail = torch.arange(T, T + len(answer) - 1) + p.rope_delta
        pos = torch.cat([p.positions, tail.expand(3, -1)], dim=1)[:, None]
        logits = model(ids, position_ids=pos, input_embeds=x)[0, T - 1:]
    assert logits.argmax(-1).tolist() == answer


def test_the_image_reaches_the_logits(parts, png, make_video):
    cfg, model, tower = parts
    video = make_video(1.5, fps=10)
    a, b = prompt_for(cfg, png, video, seed=0), prompt_for(cfg, png, video, seed=1)
    with torch.no_grad():
        la = model(torch.tensor([a.input_ids]), position_ids=a.positions[:, None],
                   input_embeds=embed_prompt(model, tower, a))[0, -1]
        lb = model(torch.tensor([b.input_ids]), position_ids=b.positions[:, None],
                   input_embeds=embed_prompt(model, tower, b))[0, -1]
    assert float((la - lb).abs().max()) > 1e-4


def _write(root, cfg, model, tower, prefix="", drop=None):
    root.mkdir(parents=True, exist_ok=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state.update({prefix + k: v.clone() for k, v in tower.state_dict().items()})
    state[prefix + "visual.vision_model.head.probe"] = torch.zeros(1, 1, 64)  # SigLIP's pooling head: skipped
    if drop:
        del state[drop]
    save_file(state, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps(cfg.to_dict()))


@pytest.mark.parametrize("prefix", ["", "model."])
def test_checkpoint_in_the_fork_layout_loads_and_runs(tmp_path, parts, png, make_video, prefix):
    cfg, model, tower = parts
    _write(tmp_path / "ckpt", cfg, model, tower, prefix)
    loaded = load_checkpoint(tmp_path / "ckpt", dtype=torch.float32)
    assert loaded.vision is not None and loaded.vision_state == {} and loaded.warnings == []
    for name, t in tower.state_dict().items():
        assert torch.equal(loaded.vision.state_dict()[name], t), name
    p = prompt_for(cfg, png, make_video(1.0, fps=10))
    with torch.no_grad():
        want = model(torch.tensor([p.input_ids]), position_ids=p.positions[:, None],
                     input_embeds=embed_prompt(model, tower, p))
        got = loaded.model(torch.tensor([p.input_ids]), position_ids=p.positions[:, None],
                           input_embeds=embed_prompt(loaded.model, loaded.vision, p))
    assert torch.equal(got, want)


def test_missing_vision_tensor_is_named(tmp_path, parts):
    cfg, model, tower = parts
    name = "visual.vision_model.encoder.layers.1.self_attn.k_proj.weight"
    _write(tmp_path / "ckpt", cfg, model, tower, drop=name)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        load_checkpoint(tmp_path / "ckpt", dtype=torch.float32)


def test_wrong_vision_shape_is_named(tmp_path, parts):
    cfg, model, tower = parts
    _write(tmp_path / "ckpt", cfg, model, tower)
    bad = cfg.replace(vision_config={**cfg.vision_config, "intermediate_size": 96})
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(bad.to_dict()))
    with pytest.raises(ValueError, match=r"layers\.0\.mlp\.fc1\.(weight|bias)' in shard .* expected \[96"):
        load_checkpoint(tmp_path / "ckpt", dtype=torch.float32)
