"""Dense mode equals transformers' Qwen3MoeForCausalLM (an independent implementation) on the same random weights.

Text positions have equal t/h/w streams, so MRoPE reduces to the 1-D RoPE of Qwen3-MoE; DSA is off (dense mode).
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")


def _hf_twin(model):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    c = model.config
    hf_config = Qwen3MoeConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads, head_dim=c.head_dim,
        moe_intermediate_size=c.moe_intermediate_size, num_experts=c.num_experts,
        num_experts_per_tok=c.num_experts_per_tok, norm_topk_prob=c.norm_topk_prob, rms_norm_eps=c.rms_norm_eps,
        max_position_embeddings=c.max_position_embeddings, tie_word_embeddings=False, decoder_sparse_step=1,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta}, attention_bias=False,
    )
    hf_config._attn_implementation = "eager"
    hf = Qwen3MoeForCausalLM(hf_config).eval()
    ours = model.state_dict()
    state = {}
    for name in hf.state_dict():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            state[name] = ours[name].transpose(1, 2)  # ours [E, in, out], transformers [E, out, in]
        else:
            state[name] = ours[name]
    missing = set(hf.state_dict()) - set(state)
    assert not missing
    hf.load_state_dict(state, strict=True)
    return hf


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_prefill_and_decode_match_transformers(seed, make_tiny):
    torch.manual_seed(seed)
    model = make_tiny(seed=seed)
    model.set_sparse(False)
    hf = _hf_twin(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 13))
    with torch.no_grad():
        ref = hf(input_ids=ids).logits.float()
        ours = model(ids)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)

        # Step-by-step decode: our static cache against transformers' own cache.
        from transformers import DynamicCache

        prompt, steps = ids[:, :5], ids[:, 5:]
        cache = model.new_cache(2, 16)
        hf_cache = DynamicCache()
        ours = model(prompt, cache=cache)
        ref = hf(input_ids=prompt, past_key_values=hf_cache, use_cache=True).logits
        torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-4)
        for t in range(steps.shape[1]):
            tok = steps[:, t: t + 1]
            ours = model(tok, cache=cache)
            ref = hf(input_ids=tok, past_key_values=hf_cache, use_cache=True).logits
            torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-4)
        assert cache.length == ids.shape[1]
