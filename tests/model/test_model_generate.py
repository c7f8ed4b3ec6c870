"""Generation: greedy decoding against repeated full forwards, sampling settings, stop tokens, streaming."""

from __future__ import annotations

import pytest
import torch

from keye_agent.model import SamplingParams, generate, sample_next, stream_generate


@pytest.mark.parametrize("sparse", [False, True])
def test_greedy_generation_equals_argmax_of_full_forwards(make_tiny, sparse):
    model = make_tiny(seed=4, sa_config={"topk": 5})
    model.set_sparse(sparse)
    prompt = [5, 17, 300, 42, 9, 1000, 77]
    out = generate(model, prompt, 10, stop_token_ids=[])
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(10):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert out.token_ids == seq[len(prompt):] and out.finish_reason == "length"


def test_stream_yields_ids_and_stops_on_stop_token(make_tiny):
    model = make_tiny(seed=4)
    prompt = [3, 4, 5, 6]
    full = generate(model, prompt, 8, stop_token_ids=[]).token_ids
    stop = full[3]
    first = full.index(stop)
    it = stream_generate(model, prompt, 8, stop_token_ids=[stop])
    streamed = list(it)
    assert streamed == full[:first]
    out = generate(model, prompt, 8, stop_token_ids=[stop])
    assert out.finish_reason == "stop" and out.stop_token_id == stop and out.token_ids == full[:first]


def test_prefix_reuse_gives_the_same_tokens(make_tiny):
    model = make_tiny(seed=6, sa_config={"topk": 4})
    a = [10, 11, 12, 13, 14, 15]
    cache = model.new_cache(1, 64)
    first = generate(model, a, 5, stop_token_ids=[], cache=cache)
    assert cache.length == len(a) + 4
    b = a + first.token_ids + [99, 98]  # the next turn extends the cached conversation
    cache.truncate(len(a) + len(first.token_ids) - 1)
    warm = generate(model, b, 5, stop_token_ids=[], cache=cache)
    cold = generate(model, b, 5, stop_token_ids=[])
    assert warm.token_ids == cold.token_ids


def test_sampling_settings():
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0]])
    assert sample_next(logits, SamplingParams()).tolist() == [1]
    # top_k=1 and a tiny top_p both leave only the argmax.
    g = torch.Generator().manual_seed(0)
    for p in (SamplingParams(temperature=1.0, top_k=1), SamplingParams(temperature=5.0, top_p=1e-3)):
        assert {int(sample_next(logits, p, generator=g)) for _ in range(20)} == {1}
    # top_k=2 never picks outside the two best; top_p=0.85 keeps {1, 2} here (p = .657, .242, .089, .012).
    for p in (SamplingParams(temperature=1.0, top_k=2), SamplingParams(temperature=1.0, top_p=0.85)):
        assert {int(sample_next(logits, p, generator=g)) for _ in range(200)} == {1, 2}
    # The same seed gives the same draws.
    p = SamplingParams(temperature=1.0)
    draws = [[int(sample_next(logits, p, generator=torch.Generator().manual_seed(3))) for _ in range(5)]
             for _ in range(2)]
    assert draws[0] == draws[1]
    # Repetition penalty: positive logits divided, negative multiplied, only for seen tokens.
    from keye_agent.model.sampling import apply_repetition_penalty

    pen = apply_repetition_penalty(logits, torch.tensor([[1, 3]]), 2.0)
    assert pen.tolist() == [[1.0, 1.5, 2.0, -2.0]]
    assert sample_next(logits, SamplingParams(repetition_penalty=2.0), torch.tensor([[1]])).tolist() == [2]
    for bad, field in (({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_k": -2}, "top_k"),
                       ({"repetition_penalty": 0}, "repetition_penalty")):
        with pytest.raises(ValueError, match=field):
            SamplingParams(**bad)


def test_generate_rejects_bad_prompts(make_tiny):
    model = make_tiny()
    with pytest.raises(ValueError, match="must not be empty"):
        generate(model, [], 3)
    with pytest.raises(ValueError, match="0..2047"):
        generate(model, [5000], 3)
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(model, [1, 2, 3], 10, cache=model.new_cache(1, 8))
