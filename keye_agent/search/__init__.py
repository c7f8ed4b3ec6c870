"""Web search and page fetching for the agent.

Backends behind one :class:`SearchBackend` protocol: ``ddgs`` (the web, through the ddgs library), SearXNG (a
self-hosted metasearch instance) and ``local`` (BM25 over a folder of documents, for air-gapped machines and
deterministic tests). The built-in tools ``web_search`` and ``fetch_url`` are registered through the
``keye_agent.tools`` entry-point group (``load_builtin("web_search", backend="local:docs/")``).
"""

from .cache import CachedBackend, DiskCache, default_cache_dir
from .ddgs_backend import DdgsBackend
from .fetch import FetchedPage, Fetcher, render_page
from .local import LocalBackend
from .results import SearchBackend, SearchResult, canonical_url, dedupe, format_results
from .searxng import SearxngBackend
from .tools import make_fetch_url, make_web_search, search_backend_from_spec, search_tools

__all__ = [
    "CachedBackend", "DdgsBackend", "DiskCache", "FetchedPage", "Fetcher", "LocalBackend", "SearchBackend",
    "SearchResult", "SearxngBackend", "canonical_url", "dedupe", "default_cache_dir", "format_results",
    "make_fetch_url", "make_web_search", "render_page", "search_backend_from_spec", "search_tools",
]
