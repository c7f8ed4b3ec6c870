"""Fixtures of the Keye backend tests, written here (no model hub on this machine): a tokenizer trained with the
tokenizers library that holds the Qwen special tokens, sized to the tiny preset's vocabulary, and a checkpoint
directory in the Hugging Face layout of Keye-VL-2.0 (config.json, per-expert tensors, two shards and
model.safetensors.index.json, a vision tensor set aside by the loader, tokenizer.json and tokenizer_config.json)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from keye_agent.model import KeyeForCausalLM, KeyeTokenizer

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>"]
ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
CORPUS = [
    "<|im_start|>system\nYou are a helpful assistant. Look things up before you answer.<|im_end|>\n",
    "<|im_start|>user\nWhat is the weather in Paris today? And in Rome?<|im_end|>\n",
    '<tool_call>\n{"name": "lookup", "arguments": {"city": "Paris"}}\n</tool_call>',
    "<tool_response>\nParis: sunny, 21 degrees. Rome: rainy, 17 degrees.\n</tool_response>",
    "# Tools\n\nYou may call one or more functions to assist with the user query. function signatures within "
    "<tools></tools> XML tags; return a json object with function name and arguments.",
    '{"type": "function", "function": {"name": "lookup", "description": "Look up the weather of a city.", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}}}}}',
    "The answer is 42. Grüße aus Köln 🌤 und 東京. def add(a, b):\n    return a + b\n",
] * 10


def build_tokenizer(root: Path) -> Path:
    """Train a byte-level BPE (about 600 ids, under the tiny preset's 2048) and save it as a checkpoint's
    tokenizer.json and tokenizer_config.json in ``root``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED])
    root.mkdir(parents=True, exist_ok=True)
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "bos_token": None, "pad_token": "<|endoftext|>"}), encoding="utf-8")
    return root


def load_tokenizer(root: Path) -> KeyeTokenizer:
    return KeyeTokenizer.from_dir(root)


def write_checkpoint(model: KeyeForCausalLM, root: Path, tokenizer_dir: Path) -> Path:
    """Save ``model`` as a Keye-VL-2.0 checkpoint: experts per expert (as Hugging Face Qwen3-MoE checkpoints
    store them), two shards with an index, bf16 tensors, plus the tokenizer files."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    state: dict[str, torch.Tensor] = {}
    for name, p in model.state_dict().items():
        p = p.detach().to(torch.bfloat16)
        if name.endswith(".mlp.experts.gate_up_proj"):
            base, inter = name[: -len(".gate_up_proj")], p.shape[2] // 2
            for e in range(p.shape[0]):
                state[f"{base}.{e}.gate_proj.weight"] = p[e, :, :inter].T.contiguous()
                state[f"{base}.{e}.up_proj.weight"] = p[e, :, inter:].T.contiguous()
        elif name.endswith(".mlp.experts.down_proj"):
            base = name[: -len(".down_proj")]
            for e in range(p.shape[0]):
                state[f"{base}.{e}.down_proj.weight"] = p[e].T.contiguous()
        else:
            state[name] = p.contiguous()
    state["visual.patch_embedding.weight"] = torch.zeros(8, 3, 14, 14, dtype=torch.bfloat16)
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(root / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, shard))
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = model.config.to_dict()
    config["architectures"] = ["KeyeVL2MoeForConditionalGeneration"]
    config["torch_dtype"] = "bfloat16"
    (root / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (root / f).write_bytes((tokenizer_dir / f).read_bytes())
    return root
