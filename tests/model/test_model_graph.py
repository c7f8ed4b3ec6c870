"""The fixed-shape decode step (what DecodeGraph captures on CUDA) equals the regular cached decode, on the CPU.

The CPU has no CUDA graphs: DecodeGraph runs the same step eagerly there, which is what these tests check (fp32,
tiny model, dense and DSA with top-k small enough that the selection drops keys).
"""

from __future__ import annotations

import pytest
import torch

from keye_agent.model.graph import DecodeGraph


@pytest.mark.parametrize("sparse,topk,batch", [(False, 2048, 1), (True, 3, 1), (True, 5, 2), (True, 2048, 2)])
def test_static_decode_equals_regular_decode(make_tiny, sparse, topk, batch) -> None:
    model = make_tiny(seed=topk + batch, sa_config={"topk": topk})
    model.set_sparse(sparse)
    g = torch.Generator().manual_seed(topk)
    prompt = torch.randint(0, model.config.vocab_size, (batch, 6), generator=g)
    steps = torch.randint(0, model.config.vocab_size, (batch, 5), generator=g)
    with torch.inference_mode():
        ref_cache, cache = model.new_cache(batch, 16), model.new_cache(batch, 16)
        model(prompt, cache=ref_cache)
        model(prompt, cache=cache)
        step = DecodeGraph(model, cache)
        assert step.graph is None  # CPU: eager
        for j in range(steps.shape[1]):
            tok = steps[:, j: j + 1]
            want = model(tok, cache=ref_cache)
            got = step(tok)
            assert got.shape == want.shape
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), f"step {j}: {(got - want).abs().max():.2e}"
        assert cache.length == ref_cache.length == 11
        n = cache.length
        assert torch.allclose(cache.k[:, :, :n], ref_cache.k[:, :, :n], atol=1e-6)
        if sparse:
            assert cache.index_length == n
            assert torch.allclose(cache.index_k[:, :, :n], ref_cache.index_k[:, :, :n], atol=1e-6)


def test_decode_graph_checks_its_inputs(make_tiny) -> None:
    model = make_tiny()
    cache = model.new_cache(1, 4)
    with torch.inference_mode():
        model(torch.zeros(1, 4, dtype=torch.long), cache=cache)
    step = DecodeGraph(model, cache)
    with pytest.raises(ValueError, match="exceed max_seq_len"):
        step(torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="token_ids must be"):
        step(torch.zeros(2, 1, dtype=torch.long))
    model.set_sparse(not model.sparse)
    with pytest.raises(ValueError, match="sparse mode changed"):
        step(torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="needs a CUDA model"):
        DecodeGraph(model, cache, use_graph=True)


@pytest.mark.parametrize("sparse", [False, True])
def test_generate_with_decode_graph_gives_the_same_tokens(make_tiny, sparse) -> None:
    """generate(decode_graph=True) runs the fixed-shape step (eager on CPU): same greedy tokens, also on a kept cache."""
    from keye_agent.model import generate

    model = make_tiny(seed=4, sa_config={"topk": 4})
    model.set_sparse(sparse)
    prompt = torch.randint(0, model.config.vocab_size, (7,), generator=torch.Generator().manual_seed(9)).tolist()
    want = generate(model, prompt, 6, stop_token_ids=[])
    got = generate(model, prompt, 6, stop_token_ids=[], decode_graph=True)
    assert got.token_ids == want.token_ids and len(got.token_ids) == 6
    cache = model.new_cache(1, 32)
    first = generate(model, prompt, 3, stop_token_ids=[], cache=cache, decode_graph=True)
    assert first.token_ids == want.token_ids[:3]
    # Reuse the kept prefix (the cache holds the prompt and two generated tokens).
    again = generate(model, prompt + first.token_ids, 3, stop_token_ids=[], cache=cache, decode_graph=True)
    assert again.token_ids == want.token_ids[3:6]
