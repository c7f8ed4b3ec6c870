"""Configuration of the Keye-VL-2.0 language model: dataclasses, parsing, checks and named presets.

The fields follow a Hugging Face ``config.json`` of a Keye-VL-2.0 checkpoint (a flat text config with a ``sa_config``
dict for DSA, ``rope_scaling`` holding ``mrope_section``, and a nested ``vision_config``). A ``text_config`` sub-dict
(newer Hugging Face layout) is merged over the top level. Vision fields and unknown keys are kept as data.

Every check raises ``ValueError`` (or ``TypeError`` for a value of the wrong type) whose message names the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KeyeConfig", "SparseAttentionConfig", "PRESETS"]


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"config field {name!r} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"config field {name!r} must be >= {minimum}, got {value}")


def _check_float(name: str, value: Any, positive: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"config field {name!r} must be a number, got {type(value).__name__} {value!r}")
    if positive and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"config field {name!r} must be a finite number > 0, got {value}")


@dataclass
class SparseAttentionConfig:
    """DSA settings (``sa_config`` in config.json): the lightning indexer and the top-k of each query."""

    indexer_num_heads: int = 4
    """Indexer query heads H (the shipped checkpoint reports 16)."""
    indexer_head_dim: int = 128
    """Indexer dimension d (the shipped checkpoint reports 64)."""
    indexer_num_kv_heads: int = 1
    """Index keys per token; the model uses one shared key (MQA), so this must be 1."""
    topk: int = 2048
    """Keys kept per query; a query whose visible range is not longer than this sees all of it."""
    q_chunk_size: int = 512
    """Kept from config.json (training-time chunking); the inference path does not need it."""
    kv_chunk_size: int = 512
    """Kept from config.json, as q_chunk_size."""

    def check(self, head_dim: int, mrope_section: list[int]) -> None:
        for name in ("indexer_num_heads", "indexer_head_dim", "topk", "q_chunk_size", "kv_chunk_size"):
            _check_int(f"sa_config.{name}", getattr(self, name))
        _check_int("sa_config.indexer_num_kv_heads", self.indexer_num_kv_heads)
        if self.indexer_num_kv_heads != 1:
            raise ValueError(
                "config field 'sa_config.indexer_num_kv_heads' must be 1 (one shared index key per token), "
                f"got {self.indexer_num_kv_heads}"
            )
        section = self.index_mrope_section(head_dim, mrope_section)
        if sum(section) * 2 != self.indexer_head_dim:
            raise ValueError(
                f"config field 'sa_config.indexer_head_dim' ({self.indexer_head_dim}) does not fit mrope_section "
                f"{mrope_section} scaled by {self.indexer_head_dim}/{head_dim} (gives {section}, which must sum to "
                f"indexer_head_dim / 2); pick an indexer_head_dim that scales the sections exactly"
            )

    def index_mrope_section(self, head_dim: int, mrope_section: list[int]) -> list[int]:
        """The MRoPE section of the index dims: the main one scaled by d / head_dim (64/128 gives [8, 12, 12])."""
        return [int(s * self.indexer_head_dim / head_dim) for s in mrope_section]


@dataclass
class KeyeConfig:
    """The language model of Keye-VL-2.0 (Qwen3-MoE backbone with DSA in every layer).

    Build one with ``KeyeConfig.from_name(preset)``, ``from_dict(d)`` or ``from_file(path)``; checks run in
    ``__post_init__`` and after ``replace``.
    """

    vocab_size: int = 151936
    hidden_size: int = 2048
    num_hidden_layers: int = 48
    num_attention_heads: int = 32
    num_key_value_heads: int = 4
    head_dim: int = 128
    moe_intermediate_size: int = 768
    """SwiGLU width of one expert."""
    num_experts: int = 128
    num_experts_per_tok: int = 8
    norm_topk_prob: bool = True
    """Renormalise the top-k router probabilities to sum to one."""
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1e7
    mrope_section: list[int] = field(default_factory=lambda: [16, 24, 24])
    """Frequencies given to the (t, h, w) position streams; sums to head_dim / 2."""
    max_position_embeddings: int = 262144
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    hidden_act: str = "silu"
    sa_config: SparseAttentionConfig | None = field(default_factory=SparseAttentionConfig)
    """DSA settings; None means a model without indexer (dense attention only)."""
    use_sparse_attention: bool = True
    """Run DSA when sa_config is set; False runs dense causal attention (the indexer is then skipped)."""
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    image_token_id: int | None = None
    video_token_id: int | None = None
    vision_start_token_id: int | None = None
    vision_end_token_id: int | None = None
    vision_config: dict[str, Any] | None = None
    """The vision tower's fields, kept as data for the vision code."""
    architectures: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of config.json this class does not model, kept verbatim."""

    def __post_init__(self) -> None:
        self.check()

    # -- checks -------------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise ValueError/TypeError naming the first inconsistent field."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                     "head_dim", "moe_intermediate_size", "num_experts", "num_experts_per_tok",
                     "max_position_embeddings"):
            _check_int(name, getattr(self, name))
        _check_float("rms_norm_eps", self.rms_norm_eps)
        _check_float("rope_theta", self.rope_theta)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"config field 'num_key_value_heads' ({self.num_key_value_heads}) must divide "
                f"num_attention_heads ({self.num_attention_heads}) for grouped-query attention"
            )
        if self.head_dim % 2:
            raise ValueError(f"config field 'head_dim' must be even for rotary embeddings, got {self.head_dim}")
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(
                f"config field 'num_experts_per_tok' ({self.num_experts_per_tok}) exceeds num_experts "
                f"({self.num_experts})"
            )
        sec = self.mrope_section
        if not isinstance(sec, (list, tuple)) or len(sec) != 3:
            raise ValueError(f"config field 'mrope_section' must list 3 integers (t, h, w), got {sec!r}")
        for i, s in enumerate(sec):
            _check_int(f"mrope_section[{i}]", s, minimum=0)
        if sum(sec) * 2 != self.head_dim:
            raise ValueError(
                f"config field 'mrope_section' {list(sec)} must sum to head_dim / 2 = {self.head_dim // 2}, "
                f"sums to {sum(sec)}"
            )
        if self.hidden_act != "silu":
            raise ValueError(f"config field 'hidden_act' must be 'silu' (SwiGLU experts), got {self.hidden_act!r}")
        if self.attention_bias:
            raise ValueError("config field 'attention_bias' must be false: Keye-VL-2.0 attention has no bias")
        if self.sa_config is not None:
            if not isinstance(self.sa_config, SparseAttentionConfig):
                raise TypeError(f"config field 'sa_config' must be a SparseAttentionConfig, got "
                                f"{type(self.sa_config).__name__}")
            self.sa_config.check(self.head_dim, list(sec))

    # -- derived ------------------------------------------------------------------------------------------------
    @property
    def sparse(self) -> bool:
        """True when the model runs DSA (an indexer exists and use_sparse_attention is on)."""
        return self.sa_config is not None and self.use_sparse_attention

    @property
    def stop_token_ids(self) -> list[int]:
        """The eos ids as a list (config.json allows one id or several)."""
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)

    def replace(self, **changes: Any) -> KeyeConfig:
        """A checked copy with some fields changed; ``sa_config`` may be given as a dict of its fields to change."""
        sa = changes.get("sa_config")
        if isinstance(sa, dict):
            base = self.sa_config or SparseAttentionConfig()
            changes["sa_config"] = dataclasses.replace(base, **sa)
        return dataclasses.replace(self, **changes)

    def num_parameters(self, include_embeddings: bool = True) -> int:
        """Parameter count of the language model as built (indexer included)."""
        h, d = self.hidden_size, self.head_dim
        attn = h * d * (2 * self.num_attention_heads + 2 * self.num_key_value_heads) + 2 * d
        moe = self.num_experts * 3 * h * self.moe_intermediate_size + self.num_experts * h
        idx = 0
        if self.sa_config is not None:
            sh, sd = self.sa_config.indexer_num_heads, self.sa_config.indexer_head_dim
            idx = h * (sh * sd + sh) + h * sd + 3 * sd
        per_layer = attn + moe + idx + 2 * h
        emb = self.vocab_size * h * (1 if self.tie_word_embeddings else 2) if include_embeddings else 0
        return self.num_hidden_layers * per_layer + h + emb

    # -- parsing ------------------------------------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str) -> KeyeConfig:
        """A named preset: one of ``PRESETS``."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; known presets: {sorted(PRESETS)}")
        return PRESETS[name]()

    @classmethod
    def from_file(cls, path: str | Path) -> KeyeConfig:
        """Parse a config.json (or a checkpoint directory holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / "config.json"
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"model config file not found: {p}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"model config {p} is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
        if not isinstance(data, dict):
            raise ValueError(f"model config {p} must hold a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{p}: {e}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyeConfig:
        """Parse the dict of a Hugging Face config.json (flat, or with a ``text_config`` merged over it)."""
        if not isinstance(data, dict):
            raise TypeError(f"model config must be a dict, got {type(data).__name__}")
        d = dict(data)
        text = d.pop("text_config", None)
        if isinstance(text, dict):
            d.update(text)
        known = {f.name for f in dataclasses.fields(cls)} - {"sa_config", "extra", "mrope_section"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in d.items():
            if key in known:
                kwargs[key] = value
            elif key not in ("sa_config", "rope_scaling", "rope_parameters"):
                extra[key] = value
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise TypeError(f"config field 'rope_scaling' must be an object, got {type(rope).__name__}")
        if "mrope_section" in rope:
            kwargs["mrope_section"] = list(rope["mrope_section"])
        elif "head_dim" in kwargs or "hidden_size" in kwargs:
            # No MRoPE section given: text-only 1-D RoPE, expressed as the whole half on the t stream.
            hd = kwargs.get("head_dim") or d["hidden_size"] // d["num_attention_heads"]
            kwargs["mrope_section"] = [hd // 2, 0, 0]
        if "rope_theta" in rope and "rope_theta" not in kwargs:
            kwargs["rope_theta"] = rope["rope_theta"]
        for key in ("rope_scaling", "rope_parameters"):
            if key in d:
                extra[key] = d[key]
        if "head_dim" not in d and "hidden_size" in d and "num_attention_heads" in d:
            kwargs["head_dim"] = d["hidden_size"] // d["num_attention_heads"]
        sa = d.get("sa_config")
        if sa is None:
            kwargs["sa_config"] = None
        elif isinstance(sa, dict):
            sa_known = {f.name for f in dataclasses.fields(SparseAttentionConfig)}
            unknown = set(sa) - sa_known
            kwargs["sa_config"] = SparseAttentionConfig(**{k: v for k, v in sa.items() if k in sa_known})
            if unknown:
                extra["sa_config_extra"] = {k: sa[k] for k in sorted(unknown)}
        else:
            raise TypeError(f"config field 'sa_config' must be an object or null, got {type(sa).__name__}")
        for key in ("mlp_only_layers",):
            if d.get(key):
                raise ValueError(f"config field {key!r} must be empty: every Keye-VL-2.0 layer is MoE, got {d[key]}")
        if d.get("decoder_sparse_step", 1) != 1:
            raise ValueError(f"config field 'decoder_sparse_step' must be 1, got {d['decoder_sparse_step']}")
        kwargs["extra"] = extra
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The config.json form (flat, ``rope_scaling.mrope_section``, ``sa_config`` dict), extra keys included."""
        out: dict[str, Any] = dict(self.extra)
        out.pop("sa_config_extra", None)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "mrope_section", "sa_config"):
                continue
            out[f.name] = getattr(self, f.name)
        rope = dict(out.get("rope_scaling") or {})
        rope.setdefault("type", "mrope")
        rope["mrope_section"] = list(self.mrope_section)
        out["rope_scaling"] = rope
        out.pop("rope_parameters", None)
        out["sa_config"] = None if self.sa_config is None else dataclasses.asdict(self.sa_config)
        return out


# Token ids of the Qwen3 / Qwen2.5-VL vocabulary (inferred from the backbone; see MODEL.md).
_QWEN_TOKEN_IDS = dict(
    bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, image_token_id=151655, video_token_id=151656,
    vision_start_token_id=151652, vision_end_token_id=151653,
)


def _keye_30b() -> KeyeConfig:
    return KeyeConfig(
        sa_config=SparseAttentionConfig(indexer_num_heads=16, indexer_head_dim=64, indexer_num_kv_heads=1,
                                        topk=2048, q_chunk_size=512, kv_chunk_size=512),
        vision_config=dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304,
                           patch_size=14, spatial_merge_size=2, image_size=384, layer_norm_eps=1e-6,
                           hidden_act="gelu_pytorch_tanh"),
        architectures=["KeyeVL2MoeForConditionalGeneration"],
        **_QWEN_TOKEN_IDS,
    )


def _tiny() -> KeyeConfig:
    # Same structure as the 30B model (GQA, QK-norm, MRoPE, MoE, DSA), a couple of million parameters.
    return KeyeConfig(
        vocab_size=2048, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, moe_intermediate_size=64, num_experts=16, num_experts_per_tok=4, rope_theta=1e6,
        mrope_section=[4, 6, 6], max_position_embeddings=8192,
        sa_config=SparseAttentionConfig(indexer_num_heads=4, indexer_head_dim=16, topk=2048),
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def _tiny_vl() -> KeyeConfig:
    # tiny plus a tiny vision tower (vision.VISION_PRESETS["tiny"]): images and videos end to end on the CPU.
    return _tiny().replace(vision_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                              intermediate_size=128, patch_size=14, spatial_merge_size=2,
                                              image_size=56, packing_positions=64))


PRESETS = {"keye-vl-2.0-30b-a3b": _keye_30b, "tiny": _tiny, "tiny-vl": _tiny_vl}
"""Named configurations: name -> factory returning a fresh KeyeConfig."""
