"""An on-disk cache of search answers with a time-to-live, and the backend wrapper that uses it.

One JSON file per entry, named by the SHA-256 of its key, written atomically (temp file + ``os.replace``) so
concurrent processes never read half an entry. Expired or unreadable entries count as misses and are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from keye_agent.errors import ConfigError

from .results import SearchBackend, SearchResult, dedupe


def default_cache_dir() -> Path:
    """``$KEYE_AGENT_CACHE_DIR``, else ``$XDG_CACHE_HOME/keye-agent``, else ``~/.cache/keye-agent``."""
    env = os.environ.get("KEYE_AGENT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "keye-agent"


class DiskCache:
    """JSON values under string keys, each valid for ``ttl_s`` seconds.

    Example::

        cache = DiskCache(default_cache_dir() / "search", ttl_s=3600)
        cache.set("k", {"a": 1}); cache.get("k")  # {'a': 1}
    """

    def __init__(self, directory: str | os.PathLike[str], ttl_s: float = 24 * 3600) -> None:
        if ttl_s <= 0:
            raise ConfigError(f"cache ttl_s must be positive, got {ttl_s}", hint="use cache=False to disable caching")
        self.directory = Path(directory).expanduser()
        self.ttl_s = float(ttl_s)

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.directory / digest[:2] / f"{digest}.json"

    def get(self, key: str) -> Any | None:
        """The value stored under ``key``, or None when absent, expired or unreadable."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self._remove(path)
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None  # a hash collision or a foreign file: not ours to delete
        if time.time() - float(entry.get("created", 0)) > self.ttl_s:
            self._remove(path)
            return None
        return entry.get("value")

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``; a cache that cannot be written is skipped, not fatal."""
        path = self._path(key)
        data = json.dumps({"key": key, "created": time.time(), "value": value}, ensure_ascii=False)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            self._remove(Path(tmp))

    def prune(self) -> int:
        """Delete expired entries; returns how many were removed."""
        removed = 0
        now = time.time()
        for path in self.directory.glob("*/*.json"):
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
                expired = now - float(entry.get("created", 0)) > self.ttl_s
            except (OSError, ValueError, AttributeError):
                expired = True
            if expired:
                self._remove(path)
                removed += 1
        return removed

    def clear(self) -> None:
        for path in self.directory.glob("*/*.json"):
            self._remove(path)

    @staticmethod
    def _remove(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()


class CachedBackend:
    """Wraps a backend: answers from the cache while fresh, normalises (de-duplicated, ranked 1..n) what the inner
    backend returns, and stores it. Errors are never cached, so a refused query is tried again next time."""

    def __init__(self, inner: SearchBackend, cache: DiskCache, *, key_prefix: str | None = None) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.key_prefix = key_prefix or getattr(inner, "cache_key", None) or inner.name
        self.hits = 0
        self.misses = 0

    def search(
        self, query: str, *, max_results: int = 10, region: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        key = json.dumps([self.key_prefix, " ".join(query.split()), max_results, region, time_range])
        cached = self.cache.get(key)
        if isinstance(cached, list):
            self.hits += 1
            return [SearchResult.from_dict(d) for d in cached]
        self.misses += 1
        results = dedupe(
            self.inner.search(query, max_results=max_results, region=region, time_range=time_range), max_results
        )
        self.cache.set(key, [r.to_dict() for r in results])
        return results
