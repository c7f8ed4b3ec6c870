"""KeyeTokenizer on a byte-level BPE tokenizer the test trains, holding the Qwen special and added tokens."""

from __future__ import annotations

import json

import pytest

from keye_agent.model.tokenizer import KeyeTokenizer

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>"]
ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
CORPUS = ["The weather in Zürich is sunny today.", "def add(a, b):\n    return a + b", "What is 2+3? It is 5.",
          '{"name": "add", "arguments": {"a": 2, "b": 3}}', "Grüße aus Köln 🌤 und 東京"] * 20


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED])
    root = tmp_path_factory.mktemp("tok")
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>", "bos_token": None,
                                                            "pad_token": "<|endoftext|>"}))
    return root


def test_encode_decode_and_special_ids(tok_dir):
    tok = KeyeTokenizer.from_dir(tok_dir)
    assert tok.chat_template is None and tok.vocab_size < 2048  # fits the tiny preset's vocabulary
    text = "<|im_start|>user\nGrüße 🌤 <tool_call>\n{}\n</tool_call><|im_end|>\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    for t in SPECIAL + ADDED:
        assert tok.encode(t) == [tok.token_to_id(t)]
    assert tok.stop_token_ids == sorted({tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")})
    assert "<|im_end|>" not in tok.decode(ids, skip_special_tokens=True)
    assert "<tool_call>" in tok.decode(ids, skip_special_tokens=True)  # added, not special: kept for parsing


def test_chat_encoding_uses_our_renderer_without_a_shipped_template(tok_dir):
    tok = KeyeTokenizer.from_dir(tok_dir)
    msgs = [{"role": "user", "content": "What is 2+3?"}]
    text = tok.render(msgs, enable_thinking=False)
    assert text == "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    ids = tok.encode_chat(msgs, enable_thinking=False)
    assert ids[0] == tok.token_to_id("<|im_start|>") and tok.decode(ids) == text


def test_shipped_template_in_tokenizer_config_is_used(tok_dir, tmp_path):
    for f in ("tokenizer.json",):
        (tmp_path / f).write_bytes((tok_dir / f).read_bytes())
    cfg = {"eos_token": {"content": "<|endoftext|>"},
           "chat_template": [{"name": "default", "template": "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
                                                             "{% endfor %}{{ eos_token }}"}]}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = KeyeTokenizer.from_dir(tmp_path)
    assert tok.render([{"role": "user", "content": "hi"}]) == "<user>hi<|endoftext|>"
    (tmp_path / "chat_template.jinja").write_text("J{{ messages | length }}")
    assert KeyeTokenizer.from_dir(tmp_path).render([{"role": "user", "content": "hi"}]) == "J1"
    with pytest.raises(ValueError, match="no tokenizer.json"):
        KeyeTokenizer.from_dir(tmp_path / "missing")


def test_incremental_decoder_never_splits_characters(tok_dir):
    tok = KeyeTokenizer.from_dir(tok_dir)
    text = "Grüße aus Köln 🌤 und 東京 <think>ok</think>"
    ids = tok.encode(text)
    dec = tok.decoder()
    deltas = [dec.feed(i) for i in ids]
    deltas.append(dec.flush())
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_checkpoint_directory_brings_its_tokenizer(tok_dir, tmp_path):
    import torch
    from safetensors.torch import save_file

    from keye_agent.model import build_model, load_checkpoint

    model = build_model("tiny", dtype=torch.float32, seed=2)
    save_file({n: p.contiguous() for n, p in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / f).write_bytes((tok_dir / f).read_bytes())
    loaded = load_checkpoint(tmp_path, dtype=torch.float32)
    assert loaded.tokenizer is not None
    assert loaded.tokenizer.stop_token_ids == KeyeTokenizer.from_dir(tok_dir).stop_token_ids
