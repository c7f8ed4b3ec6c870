"""A paged KV cache: K, V and the DSA index keys of every layer in fixed-size pages from one pool that every
sequence of a batch shares, with prefix caching across sequences.

Layout: ``k``, ``v`` [L, P + 1, page_size, Hkv, D]; ``index_k`` [L, P + 1, page_size, d] (None without indexer).
A sequence owns a list of pages (its block table); its token at position t lives in slot
``pages[t // page_size] * page_size + t % page_size`` of the flattened [L][(P + 1) * page_size, ...] views. Page P
(the last) is scratch: never handed out, it absorbs the writes of padding rows of a captured batch step.

Prefix caching: a full page is known by the hash chain of the token ids up to its end (and the attention mode that
wrote it: K and V of a DSA forward differ from a dense one's once a range exceeds top-k), so a new sequence whose
prompt starts with the same tokens takes the pages instead of prefilling them. Pages are refcounted; a cached page
no sequence holds stays readable until a new allocation needs it (least recently released first). A sequence only
ever writes past its matched pages, so a shared page is never written.

    pool = PagePool(config, num_pages=256, page_size=32)
    pages = pool.match(prompt_ids, sparse)          # cached full pages of the longest known prefix (refcount + 1)
    pages += pool.allocate(n)                       # fresh pages (evicts cached pages nobody holds, if needed)
    pool.register(page, key)                        # once a page is full: later prompts may reuse it
    pool.release(pages)                             # refcount - 1; unregistered pages return to the free list

Not thread-safe: one scheduler (``model.batch.BatchEngine``) owns it.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch

from keye_agent.model.config import KeyeConfig

__all__ = ["PageExhaustedError", "PagePool", "chain_keys"]


class PageExhaustedError(ValueError):
    """More pages were asked for than are free or evictable (the scheduler waits rather than raising it)."""


def chain_keys(ids: Sequence[int], page_size: int, sparse: bool, n_pages: int | None = None,
               start_key: bytes | None = None, first_page: int = 0) -> Iterator[bytes]:
    """The key of each full page of ``ids`` from ``first_page`` (``start_key``: the key of the page before it):
    a digest of the previous key and the page's ids, seeded by the attention mode."""
    key = start_key if start_key is not None else (b"dsa" if sparse else b"dense")
    last = len(ids) // page_size if n_pages is None else min(n_pages, len(ids) // page_size)
    for p in range(first_page, last):
        h = hashlib.blake2b(key, digest_size=16)
        h.update(array("q", ids[p * page_size: (p + 1) * page_size]).tobytes())
        key = h.digest()
        yield key


class PagePool:
    """``num_pages`` pages of ``page_size`` tokens for every layer of ``config``'s model (module docstring)."""

    def __init__(self, config: KeyeConfig, num_pages: int, page_size: int = 32,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if num_pages < 1 or page_size < 1:
            raise ValueError(f"PagePool: num_pages and page_size must be >= 1, got {num_pages} and {page_size}")
        L, hkv, d = config.num_hidden_layers, config.num_key_value_heads, config.head_dim
        self.num_pages, self.page_size = num_pages, page_size
        self.scratch = num_pages
        """The scratch page (padding rows write there)."""
        self.k = torch.zeros(L, num_pages + 1, page_size, hkv, d, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.index_k: torch.Tensor | None = None
        if config.sa_config is not None:
            self.index_k = torch.zeros(L, num_pages + 1, page_size, config.sa_config.indexer_head_dim,
                                       device=device, dtype=dtype)
        self._ref = [0] * num_pages
        self._free = list(range(num_pages - 1, -1, -1))  # popped from the end: page 0 first
        self._page_of: dict[bytes, int] = {}
        self._key_of: dict[int, bytes] = {}
        self._idle: OrderedDict[int, None] = OrderedDict()  # cached pages nobody holds, least recently released first
        self.evictions = 0

    # ---- views --------------------------------------------------------------------------------------------

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Flat views of layer i: k, v [(P + 1) * page_size, Hkv, D], index keys [(P + 1) * page_size, d]."""
        k, v = self.k[i].flatten(0, 1), self.v[i].flatten(0, 1)
        return k, v, None if self.index_k is None else self.index_k[i].flatten(0, 1)

    def slots(self, pages: Sequence[int], start: int, end: int) -> list[int]:
        """Flat slot of each position start..end-1 of a sequence holding ``pages``."""
        ps = self.page_size
        return [pages[t // ps] * ps + t % ps for t in range(start, end)]

    # ---- accounting ---------------------------------------------------------------------------------------

    @property
    def available(self) -> int:
        """Pages an allocation can take now: free ones and cached ones nobody holds."""
        return len(self._free) + len(self._idle)

    @property
    def cached(self) -> int:
        """Pages registered under a prefix key (held or idle)."""
        return len(self._key_of)

    @property
    def used(self) -> int:
        """Pages held by at least one sequence."""
        return self.num_pages - self.available

    def refcount(self, page: int) -> int:
        return self._ref[page]

    def allocate(self, n: int) -> list[int]:
        """``n`` pages, refcount 1 each; cached pages nobody holds are evicted (oldest first) when none is free."""
        if n > self.available:
            raise PageExhaustedError(f"PagePool: {n} pages wanted, {self.available} free or evictable of "
                                     f"{self.num_pages}")
        out = []
        for _ in range(n):
            if self._free:
                page = self._free.pop()
            else:
                page, _ = self._idle.popitem(last=False)
                del self._page_of[self._key_of.pop(page)]
                self.evictions += 1
            self._ref[page] = 1
            out.append(page)
        return out

    def match(self, ids: Sequence[int], sparse: bool, max_pages: int | None = None) -> tuple[list[int], bytes | None]:
        """The cached pages of the longest known prefix of ``ids`` (at most ``max_pages``), each held once more,
        and the key of the last (None when nothing matched)."""
        pages: list[int] = []
        last: bytes | None = None
        for key in chain_keys(ids, self.page_size, sparse, max_pages):
            page = self._page_of.get(key)
            if page is None:
                break
            if self._ref[page] == 0:
                del self._idle[page]
            self._ref[page] += 1
            pages.append(page)
            last = key
        return pages, last

    def register(self, page: int, key: bytes) -> bool:
        """Make a held, full page reusable under ``key``; False when another page already holds that prefix."""
        if key in self._page_of or page in self._key_of:
            return False
        self._page_of[key], self._key_of[page] = page, key
        return True

    def release(self, pages: Sequence[int]) -> None:
        """Drop one hold of each page. The last hold returns an unregistered page to the free list and keeps a
        registered one readable (idle) until evicted; a sequence's tail pages go first (released in reverse)."""
        for page in reversed(pages):
            n = self._ref[page] - 1
            if n < 0:
                raise ValueError(f"PagePool.release: page {page} is not held")
            self._ref[page] = n
            if n == 0:
                if page in self._key_of:
                    self._idle[page] = None
                else:
                    self._free.append(page)

    def clear_prefixes(self) -> None:
        """Forget the prefix keys of pages nobody holds (they become free); held pages keep theirs."""
        for page in list(self._idle):
            del self._page_of[self._key_of.pop(page)]
            self._free.append(page)
        self._idle.clear()

    @property
    def nbytes(self) -> int:
        n = self.k.nbytes + self.v.nbytes
        return n + (self.index_k.nbytes if self.index_k is not None else 0)
