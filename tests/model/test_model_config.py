"""KeyeConfig: presets, parsing config.json (flat and text_config layouts), and errors naming the field."""

from __future__ import annotations

import json

import pytest

from keye_agent.model import KeyeConfig, SparseAttentionConfig


def test_30b_preset_matches_model_md():
    c = KeyeConfig.from_name("keye-vl-2.0-30b-a3b")
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (
        2048, 48, 32, 4, 128)
    assert (c.num_experts, c.num_experts_per_tok, c.moe_intermediate_size, c.norm_topk_prob) == (128, 8, 768, True)
    assert c.mrope_section == [16, 24, 24] and c.rope_theta == 1e7 and c.max_position_embeddings == 262144
    sa = c.sa_config
    assert (sa.indexer_num_heads, sa.indexer_head_dim, sa.indexer_num_kv_heads, sa.topk) == (16, 64, 1, 2048)
    assert sa.index_mrope_section(c.head_dim, c.mrope_section) == [8, 12, 12]
    assert 30.0e9 < c.num_parameters() < 31.2e9  # language model only; the vision tower adds ~0.4 B
    tiny = KeyeConfig.from_name("tiny")
    assert 1e6 < tiny.num_parameters() < 5e6 and tiny.sparse


def test_from_dict_roundtrip_and_hf_layouts(tmp_path):
    c = KeyeConfig.from_name("keye-vl-2.0-30b-a3b")
    d = c.to_dict()
    d["some_future_key"] = {"kept": True}
    assert KeyeConfig.from_dict(d) == KeyeConfig.from_dict(KeyeConfig.from_dict(d).to_dict())
    assert KeyeConfig.from_dict(d).extra["some_future_key"] == {"kept": True}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d))
    assert KeyeConfig.from_file(tmp_path).sa_config == c.sa_config
    # Newer Hugging Face layout: a text_config and rope_parameters.
    nested = {"architectures": ["KeyeVL2MoeForConditionalGeneration"], "vision_config": {"hidden_size": 1152},
              "text_config": {"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
                              "head_dim": 64, "num_hidden_layers": 1,
                              "rope_parameters": {"rope_theta": 5e5, "mrope_section": [8, 12, 12]}},
              "sa_config": None}
    n = KeyeConfig.from_dict(nested)
    assert n.hidden_size == 256 and n.rope_theta == 5e5 and n.sa_config is None and not n.sparse
    assert n.vision_config == {"hidden_size": 1152}


@pytest.mark.parametrize("changes,field,exc", [
    ({"num_attention_heads": 6, "num_key_value_heads": 4}, "num_key_value_heads", ValueError),
    ({"mrope_section": [16, 24, 20]}, "mrope_section", ValueError),
    ({"mrope_section": [16, 24]}, "mrope_section", ValueError),
    ({"sa_config": {"topk": 0}}, "sa_config.topk", ValueError),
    ({"sa_config": {"indexer_head_dim": 40}}, "sa_config.indexer_head_dim", ValueError),
    ({"sa_config": {"indexer_num_kv_heads": 2}}, "sa_config.indexer_num_kv_heads", ValueError),
    ({"num_experts_per_tok": 200}, "num_experts_per_tok", ValueError),
    ({"hidden_size": "2048"}, "hidden_size", TypeError),
    ({"num_hidden_layers": True}, "num_hidden_layers", TypeError),
    ({"rope_theta": -1.0}, "rope_theta", ValueError),
    ({"hidden_act": "gelu"}, "hidden_act", ValueError),
])
def test_inconsistent_fields_are_named(changes, field, exc):
    with pytest.raises(exc, match=field.replace(".", r"\.")):
        KeyeConfig.from_name("keye-vl-2.0-30b-a3b").replace(**changes)


def test_parse_errors_name_file_and_field(tmp_path):
    with pytest.raises(ValueError, match="unknown model preset 'nope'"):
        KeyeConfig.from_name("nope")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="line 1"):
        KeyeConfig.from_file(bad)
    bad.write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 3, "num_key_value_heads": 2,
                               "head_dim": 32, "rope_scaling": {"mrope_section": [4, 6, 6]}}))
    with pytest.raises(ValueError, match=r"config\.json: .*num_key_value_heads"):
        KeyeConfig.from_file(bad)
    with pytest.raises(ValueError, match="mlp_only_layers"):
        KeyeConfig.from_dict({"mlp_only_layers": [0]})
    with pytest.raises(TypeError, match="sa_config"):
        KeyeConfig.from_dict({"sa_config": [1]})
    assert isinstance(KeyeConfig().sa_config, SparseAttentionConfig)
