"""Load a Keye-VL-2.0 checkpoint directory (config.json + safetensors) into a ``KeyeForCausalLM``.

The model is built on the meta device and materialised on the target device uninitialised; every tensor is then read
from the memory-mapped shard, one at a time, and copied straight into its parameter (cast to the model dtype on the
device), so host memory holds at most one shard's mapped pages and one tensor besides the model.

Names: ``model.*`` and ``lm_head.*`` fill the language model (``model.language_model.*`` is accepted for
``model.*``); ``visual.*`` and ``mlp_AR.*`` (also under ``model.``) fill the vision tower
(``model.vision.VisionTower``, in the fork's layout, see ``vision.load``) when config.json has a ``vision_config``,
and are kept aside as tensors otherwise. Experts come
per expert (``mlp.experts.E.{gate_proj,up_proj,down_proj}.weight``, transposed into the fused tensors) or fused
(``mlp.experts.gate_up_proj`` [E, hidden, 2I] and ``mlp.experts.down_proj`` [E, I, hidden], copied as they are).
A checkpoint without indexer weights loads with a warning, gets random indexer weights, and runs dense.

Errors are ``ValueError`` naming the tensor and the shard.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from keye_agent.model.build import init_random_weights
from keye_agent.model.config import KeyeConfig
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.tokenizer import KeyeTokenizer
from keye_agent.model.vision.config import VisionConfig
from keye_agent.model.vision.load import VisionFiller
from keye_agent.model.vision.vit import VisionTower

__all__ = ["LoadedCheckpoint", "checkpoint_files", "load_checkpoint"]

_PER_EXPERT = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
_VISION_PREFIXES = ("visual.", "mlp_AR.")
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass
class LoadedCheckpoint:
    """What ``load_checkpoint`` returns: the model, its config, the vision tensors set aside, and warnings."""

    model: KeyeForCausalLM
    config: KeyeConfig
    vision_state: dict[str, torch.Tensor] = field(default_factory=dict)
    """``visual.*`` and ``mlp_AR.*`` tensors (target device, model dtype) of a config without ``vision_config``."""
    vision: VisionTower | None = None
    """The vision tower and projector, loaded when config.json has a ``vision_config`` (and load_vision)."""
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None
    tokenizer: KeyeTokenizer | None = None
    """The checkpoint's tokenizer and chat template, when it ships tokenizer.json."""


def checkpoint_files(path: str | Path) -> dict[str, str]:
    """Map every tensor name to its shard file name, from model.safetensors.index.json or the shard headers."""
    root = Path(path)
    index = root / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{index}: not a safetensors index with a 'weight_map' object ({e})") from None
        for shard in sorted(set(weight_map.values())):
            if not (root / shard).is_file():
                raise ValueError(f"{index} lists shard {shard!r}, which is not in {root}")
        return dict(weight_map)
    shards = sorted(p.name for p in root.glob("*.safetensors"))
    if not shards:
        raise ValueError(f"no model.safetensors.index.json and no *.safetensors file in {root}")
    from safetensors import safe_open

    out: dict[str, str] = {}
    for shard in shards:
        with safe_open(str(root / shard), framework="pt") as f:
            for name in f.keys():
                if name in out:
                    raise ValueError(f"tensor {name!r} appears in two shards: {out[name]} and {shard}")
                out[name] = shard
    return out


def _canonical(name: str) -> str:
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual.") or name.startswith("model.mlp_AR."):
        return name[len("model."):]
    return name


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.bfloat16,
                    load_vision: bool = True, sparse: bool | None = None) -> LoadedCheckpoint:
    """Load the checkpoint directory ``path`` onto ``device`` in ``dtype``.

    ``sparse`` forces DSA on or off; by default DSA runs when the checkpoint has indexer weights and its config a
    ``sa_config``, and dense otherwise (an untrained indexer would select keys at random).
    """
    from safetensors import safe_open

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"checkpoint path {root} is not a directory (expected config.json and *.safetensors)")
    config = KeyeConfig.from_file(root / "config.json")
    weight_map = checkpoint_files(root)
    with torch.device("meta"):
        model = KeyeForCausalLM(config)
    model = model.to(dtype=dtype).to_empty(device=device)
    model.eval().requires_grad_(False)
    params = dict(model.named_parameters())
    inter = config.moe_intermediate_size
    need = {n for n in params if not (config.tie_word_embeddings and n == "lm_head.weight")}
    filled: set[str] = set()
    expert_parts: dict[str, set[tuple[int, str]]] = {}
    vision: dict[str, torch.Tensor] = {}
    filler = None
    if load_vision and config.vision_config:
        filler = VisionFiller(VisionConfig.from_dict(config.vision_config, config.hidden_size), device, dtype)
    notes: list[str] = []
    unexpected: list[str] = []

    def target_of(name: str, shard: str, shape: tuple[int, ...]):
        """(parameter view to copy into, transpose?) for a checkpoint tensor, or None when it is not ours."""
        m = _PER_EXPERT.match(name)
        if m:
            prefix, e, part = m.group(1), int(m.group(2)), m.group(3)
            fused = params.get(prefix + (".down_proj" if part == "down_proj" else ".gate_up_proj"))
            if fused is None or e >= config.num_experts:
                return None
            want = (config.hidden_size, inter) if part == "down_proj" else (inter, config.hidden_size)
            _check_shape(name, shard, shape, want)
            expert_parts.setdefault(prefix, set()).add((e, part))
            view = {"gate_proj": fused[e, :, :inter], "up_proj": fused[e, :, inter:], "down_proj": fused[e]}[part]
            return view, True
        p = params.get(name)
        if p is None:
            return None
        _check_shape(name, shard, shape, tuple(p.shape))
        filled.add(name)
        return p, False

    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    for shard, names in sorted(by_shard.items()):
        with safe_open(str(root / shard), framework="pt") as f:
            present = set(f.keys())
            for name in names:
                if name not in present:
                    raise ValueError(f"tensor {name!r} is listed in the index for shard {shard} but the shard lacks it")
                canon = _canonical(name)
                if canon.endswith(_IGNORED_SUFFIXES):
                    continue
                sl = f.get_slice(name)
                _dtype_of(sl.get_dtype(), name, shard)
                shape = tuple(sl.get_shape())
                if canon.startswith(_VISION_PREFIXES):
                    if filler is not None:
                        if filler.skip(canon):
                            continue
                        if not filler.wants(canon):
                            unexpected.append(canon)
                            continue
                        _check_shape(canon, shard, shape, filler.shape_of(canon))
                        filler.copy(canon, f.get_tensor(name))
                    elif load_vision:
                        vision[canon] = f.get_tensor(name).to(device=device, dtype=dtype)
                    continue
                tgt = target_of(canon, shard, shape)
                if tgt is None:
                    unexpected.append(canon)
                    continue
                view, transpose = tgt
                tensor = f.get_tensor(name)
                with torch.no_grad():
                    view.copy_(tensor.T if transpose else tensor)
                del tensor

    for prefix, parts in expert_parts.items():
        for suffix in (".gate_up_proj", ".down_proj"):
            if prefix + suffix in filled:
                raise ValueError(f"experts of {prefix} appear both fused ({prefix + suffix}) and per expert")
        kinds = {"gate_proj", "up_proj"}
        if len({(e, p) for e, p in parts if p in kinds}) == 2 * config.num_experts:
            filled.add(prefix + ".gate_up_proj")
        if len({e for e, p in parts if p == "down_proj"}) == config.num_experts:
            filled.add(prefix + ".down_proj")

    missing = sorted(need - filled)
    indexer_missing = [n for n in missing if ".sa_indexer." in n]
    has_indexer = config.sa_config is not None and not indexer_missing
    if indexer_missing:
        all_indexer = [n for n in need if ".sa_indexer." in n]
        if len(indexer_missing) != len(all_indexer):
            raise ValueError(f"checkpoint {root} holds indexer weights for some layers only; missing tensor "
                             f"{indexer_missing[0]!r} (and {len(indexer_missing) - 1} more)")
        msg = (f"checkpoint {root} has no DSA indexer weights (self_attn.sa_indexer.*): they were initialised at "
               f"random and the model runs dense attention; DSA with an untrained indexer would select keys at random")
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
        _init_indexers(model)
        missing = [n for n in missing if ".sa_indexer." not in n]
    if filler is not None and filler.missing():
        missing += filler.missing()
    if missing:
        first = missing[0]
        where = _expert_hint(first, expert_parts, config.num_experts)
        raise ValueError(f"checkpoint {root} is missing tensor {first!r}{where} ({len(missing)} missing in all; "
                         f"next: {missing[1:4]})")
    if unexpected:
        msg = f"checkpoint {root}: {len(unexpected)} tensors not used by the language model, e.g. {unexpected[:3]}"
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.set_sparse(has_indexer if sparse is None else sparse)
    tokenizer = KeyeTokenizer.from_dir(root) if (root / "tokenizer.json").is_file() else None
    return LoadedCheckpoint(model=model, config=config, vision_state=vision, warnings=notes, path=root,
                            tokenizer=tokenizer, vision=None if filler is None else filler.tower)


def _check_shape(name: str, shard: str, shape: tuple[int, ...], want: tuple[int, ...]) -> None:
    if tuple(shape) != tuple(want):
        raise ValueError(f"tensor {name!r} in shard {shard} has shape {list(shape)}, expected {list(want)} "
                         f"for this config.json")


def _dtype_of(code: str, name: str, shard: str) -> torch.dtype:
    table = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    dt = table.get(code)
    if dt is None:
        raise ValueError(f"tensor {name!r} in shard {shard} has dtype {code}; expected a float dtype "
                         f"(BF16, F16, F32); quantised checkpoints are not supported")
    return dt


def _expert_hint(name: str, parts: dict[str, set[tuple[int, str]]], n_experts: int) -> str:
    """For a missing fused expert tensor read per expert, name the first missing per-expert tensor."""
    for suffix, kinds in ((".gate_up_proj", ("gate_proj", "up_proj")), (".down_proj", ("down_proj",))):
        if name.endswith(suffix):
            prefix = name[: -len(suffix)]
            got = parts.get(prefix)
            if got:
                for e in range(n_experts):
                    for k in kinds:
                        if (e, k) not in got:
                            return f" (read per expert: {prefix}.{e}.{k}.weight is absent)"
    return ""


def _init_indexers(model: KeyeForCausalLM) -> None:
    for i, layer in enumerate(model.model.layers):
        if layer.self_attn.sa_indexer is not None:
            init_random_weights(layer.self_attn.sa_indexer, seed=i)
