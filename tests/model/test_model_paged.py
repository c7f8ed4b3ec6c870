"""PagePool bookkeeping: allocation, prefix keys, refcounts, least-recently-released eviction, clear."""

from __future__ import annotations

import pytest

from keye_agent.model import KeyeConfig
from keye_agent.model.paged import PageExhaustedError, PagePool, chain_keys


def pool(n: int = 4, page: int = 2) -> PagePool:
    return PagePool(KeyeConfig.from_name("tiny"), n, page)


def test_chain_keys_depend_on_every_earlier_token_and_the_mode():
    a = list(chain_keys([1, 2, 3, 4, 5], 2, sparse=True))
    assert len(a) == 2  # full pages only
    assert list(chain_keys([1, 2, 3, 4], 2, sparse=True)) == a
    assert list(chain_keys([9, 2, 3, 4], 2, sparse=True))[1] != a[1]  # page 2 is known by its whole prefix
    assert list(chain_keys([1, 2, 3, 4], 2, sparse=False)) != a
    assert list(chain_keys([1, 2, 3, 4], 2, True, start_key=a[0], first_page=1)) == a[1:]


def test_shapes_and_scratch_page():
    p = pool()
    k, v, ik = p.layer(0)
    assert k.shape == (5 * 2, 2, 32) and ik is not None and ik.shape == (10, 16)
    assert p.scratch == 4 and p.slots([3, 1], 1, 4) == [7, 2, 3]


def test_match_register_release_and_eviction_order():
    p = pool()
    ids = [1, 2, 3, 4, 5, 6]
    pages = p.allocate(3)
    keys = list(chain_keys(ids, 2, True))
    for page, key in zip(pages, keys, strict=True):
        assert p.register(page, key)
    assert not p.register(pages[0], keys[1])  # a page has one key
    got, last = p.match(ids + [7], True)
    assert got == pages and last == keys[-1] and [p.refcount(x) for x in pages] == [2, 2, 2]
    p.release(got)
    p.release(pages)
    assert p.used == 0 and p.cached == 3 and p.available == 4
    # cached pages nobody holds are evicted tail first (a sequence's last page is the least shared)
    fresh = p.allocate(2)
    assert fresh[0] not in pages and fresh[1] == pages[2] and p.evictions == 1
    got, _ = p.match(ids, True)
    assert got == pages[:2]  # the chain is cut where a page was evicted
    with pytest.raises(PageExhaustedError, match="2 pages wanted, 0 free"):
        p.allocate(2)
    p.release(got)
    p.release(fresh)
    with pytest.raises(ValueError, match="not held"):
        p.release(fresh[:1])
    p.clear_prefixes()
    assert p.cached == 0 and p.available == 4 and p.match(ids, True) == ([], None)
