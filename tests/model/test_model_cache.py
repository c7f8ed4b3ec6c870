"""Decoding with the static cache equals a full forward pass at every step, dense and DSA."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("sparse,topk", [(False, 2048), (True, 4), (True, 2048)])
def test_cached_decode_equals_full_forward_every_step(make_tiny, sparse, topk):
    model = make_tiny(seed=7, sa_config={"topk": topk})
    model.set_sparse(sparse)
    ids = torch.randint(0, 2048, (2, 16), generator=torch.Generator().manual_seed(1))
    cache = model.new_cache(2, 20)
    with torch.no_grad():
        full = model(ids)
        # Prefill in two chunks (the second starts mid-sequence), then one token at a time.
        torch.testing.assert_close(model(ids[:, :4], cache=cache), full[:, :4], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(ids[:, 4:7], cache=cache), full[:, 4:7], rtol=1e-5, atol=1e-5)
        for t in range(7, 16):
            step = model(ids[:, t: t + 1], cache=cache)
            torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-5, atol=1e-5)
    assert cache.length == 16
    assert cache.index_length == (16 if sparse else 0)


def test_truncate_and_refill_reuses_prefix(make_tiny):
    model = make_tiny(seed=2, sa_config={"topk": 3})
    ids = torch.randint(0, 2048, (1, 12), generator=torch.Generator().manual_seed(2))
    other = torch.randint(0, 2048, (1, 5), generator=torch.Generator().manual_seed(3))
    cache = model.new_cache(1, 16)
    with torch.no_grad():
        model(torch.cat([ids[:, :7], other], dim=1), cache=cache)
        cache.truncate(7)  # keep the common prefix, drop the other continuation
        tail = model(ids[:, 7:], cache=cache)
        full = model(ids)
    torch.testing.assert_close(tail, full[:, 7:], rtol=1e-5, atol=1e-5)


def test_cache_errors_name_the_problem(make_tiny):
    model = make_tiny()
    cache = model.new_cache(1, 8)
    with torch.no_grad():
        with pytest.raises(ValueError, match="exceed max_seq_len 8"):
            model(torch.zeros(1, 9, dtype=torch.long), cache=cache)
        with pytest.raises(ValueError, match="batch_size"):
            model(torch.zeros(2, 2, dtype=torch.long), cache=cache)
        model.set_sparse(False)
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
        model.set_sparse(True)
        with pytest.raises(ValueError, match="dense mode"):
            model(torch.zeros(1, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="max_seq_len"):
        model.new_cache(1, 10**9)
    assert cache.nbytes == cache.k.nbytes * 2 + cache.index_k.nbytes
