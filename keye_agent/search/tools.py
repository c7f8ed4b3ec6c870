"""The built-in tools ``web_search`` and ``fetch_url`` (entry points in the ``keye_agent.tools`` group) and
:func:`search_backend_from_spec`, which turns ``ddgs``, ``searxng:URL`` or ``local:PATH`` into a backend.

YAML registry::

    tools:
      - builtin: web_search
        options: {backend: "searxng:http://localhost:8888", max_results: 5, cache_ttl_s: 3600}
      - builtin: fetch_url
        options: {max_chars: 12000, network: {allow_private: true}}

Python::

    registry = ToolRegistry([make_web_search(backend="local:docs/"), make_fetch_url(corpus="docs/")])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from keye_agent.errors import ConfigError, ToolExecutionError
from keye_agent.tools import Tool
from keye_agent.tools.netguard import NetPolicy, Resolver

from .cache import CachedBackend, DiskCache, default_cache_dir
from .fetch import DEFAULT_USER_AGENT, FetchedPage, Fetcher, render_page
from .local import LocalBackend
from .results import TIME_RANGES, SearchBackend, format_results

SPEC_FORMS = "'ddgs', 'ddgs:ENGINE,ENGINE', 'searxng:URL' or 'local:PATH'"


def search_backend_from_spec(spec: str | SearchBackend, **options: Any) -> SearchBackend:
    """A backend from a short spec (the CLI's ``--search``) plus constructor options.

    ``ddgs`` (optionally ``ddgs:duckduckgo,brave``), ``searxng:http://host:8888`` (or ``searxng`` with
    ``base_url=``), ``local:PATH`` (or ``local`` with ``path=``). A backend object passes through unchanged.

    Example::

        search_backend_from_spec("local:~/papers")
        search_backend_from_spec("searxng:http://localhost:8888", categories="general,science")
    """
    if not isinstance(spec, str):
        if isinstance(spec, SearchBackend):
            if options:
                raise ConfigError(f"options {sorted(options)} cannot apply to an already built backend {spec.name!r}")
            return spec
        raise ConfigError(f"search backend must be a spec string ({SPEC_FORMS}) or a SearchBackend, got {spec!r}")
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    try:
        if kind == "ddgs":
            from .ddgs_backend import DdgsBackend

            if arg:
                options["engines"] = arg
            return DdgsBackend(**options)
        if kind == "searxng":
            from .searxng import SearxngBackend

            base_url = arg or options.pop("base_url", None) or os.environ.get("SEARXNG_URL")
            if not base_url:
                raise ConfigError(
                    "the searxng backend needs the instance URL", hint="use 'searxng:http://localhost:8888' or set SEARXNG_URL"
                )
            options.pop("base_url", None)
            return SearxngBackend(base_url, **options)
        if kind == "local":
            path = arg or options.pop("path", None)
            if not path:
                raise ConfigError("the local backend needs a folder", hint="use 'local:PATH'")
            options.pop("path", None)
            return LocalBackend(path, **options)
    except TypeError as e:
        raise ConfigError(f"search backend {kind!r}: bad options {sorted(options)}: {e}") from e
    raise ConfigError(f"unknown search backend {spec!r}", hint=f"use {SPEC_FORMS}")


def _web_search_schema(default_max: int, limit: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "description": "What to search for: a few keywords."},
            "max_results": {
                "type": "integer", "minimum": 1, "maximum": limit, "default": default_max,
                "description": f"How many results to return (1-{limit}).",
            },
            "region": {
                "type": ["string", "null"], "default": None,
                "description": "Region and language as 'country-language', e.g. 'us-en', 'uk-en', 'cn-zh'; "
                "omit for the default.",
            },
            "time_range": {
                "enum": [*TIME_RANGES, None], "default": None,
                "description": "Only results from the last day, week, month or year; omit for any time.",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }


def make_web_search(
    *,
    backend: str | SearchBackend = "ddgs",
    max_results: int = 5,
    max_results_limit: int = 20,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_ttl_s: float = 24 * 3600,
    name: str = "web_search",
    description: str | None = None,
    timeout_s: float | None = 120.0,
    backend_options: Mapping[str, Any] | None = None,
    **more_backend_options: Any,
) -> Tool:
    """Build the ``web_search`` tool.

    Args:
        backend: a spec (``ddgs``, ``searxng:URL``, ``local:PATH``) or a SearchBackend object.
        max_results: results returned when the model does not say.
        max_results_limit: the most the model may ask for.
        cache: keep answers on disk for ``cache_ttl_s`` seconds (under ``cache_dir``, default
            ``~/.cache/keye-agent/search``); never for the local backend, which is already local.
        backend_options: options for the backend's constructor (unknown top-level options go there too).
    """
    if not 1 <= max_results <= max_results_limit:
        raise ConfigError(f"web_search: max_results must be between 1 and max_results_limit={max_results_limit}")
    opts = {**(backend_options or {}), **more_backend_options}
    if timeout_s is not None and isinstance(backend, str) and backend.partition(":")[0] in ("ddgs", "searxng"):
        opts.setdefault("deadline_s", timeout_s)  # a backoff never sleeps past the tool's own timeout
    inner = search_backend_from_spec(backend, **opts)
    engine: SearchBackend = inner
    if cache and not isinstance(inner, LocalBackend):
        directory = Path(cache_dir).expanduser() if cache_dir else default_cache_dir() / "search"
        engine = CachedBackend(inner, DiskCache(directory, ttl_s=cache_ttl_s))

    def web_search(query: str, max_results: int = max_results, region: str | None = None,
                   time_range: str | None = None) -> str:
        results = engine.search(query, max_results=max_results, region=region, time_range=time_range)
        return format_results(query, results)

    if description is None:
        if isinstance(inner, LocalBackend):
            description = ("Search the local document collection (offline). Returns numbered results with title, URL "
                           "and a snippet; read a whole document with fetch_url and cite the URLs you used.")
        else:
            description = ("Search the web. Returns numbered results with title, URL and a snippet; read a page with "
                           "fetch_url and cite the URLs you used.")
    return Tool(
        name=name, description=description, parameters=_web_search_schema(max_results, max_results_limit),
        fn=web_search, timeout_s=timeout_s, retries=0,  # the backends retry with backoff themselves
        metadata={"backend": inner.name, "backend_object": inner, "search_backend": engine},
    )


def _policy(network: NetPolicy | Mapping[str, Any] | None, flags: dict[str, Any]) -> NetPolicy:
    if isinstance(network, NetPolicy):
        return network
    merged = {**(dict(network) if network else {}), **{k: v for k, v in flags.items() if v is not None}}
    known = {f.name for f in fields(NetPolicy)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(f"fetch_url: unknown network option(s) {unknown}; known: {sorted(known)}")
    if "allowed_hosts" in merged:
        merged["allowed_hosts"] = frozenset(merged["allowed_hosts"])
    redirects = merged.get("max_redirects", 0)
    if not isinstance(redirects, int) or not 0 <= redirects <= 20:
        raise ConfigError(f"fetch_url: max_redirects must be an integer from 0 to 20, got {redirects!r}")
    return NetPolicy(**merged)


def _corpus_page(backend: LocalBackend, url: str) -> FetchedPage | None:
    doc = backend.get(url)
    if doc is None:
        return None
    return FetchedPage(url=url, final_url=doc.url, status=200, content_type=f"{doc.kind} (offline corpus)",
                       text=doc.text, title=doc.title, kind=doc.kind)


def make_fetch_url(
    *,
    network: NetPolicy | Mapping[str, Any] | None = None,
    allow_private: bool | None = None,
    allow_loopback: bool | None = None,
    allow_link_local: bool | None = None,
    allowed_hosts: list[str] | None = None,
    max_redirects: int | None = None,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 10.0,
    max_bytes: int = 5 * 2**20,
    max_chars: int = 20_000,
    max_chars_limit: int = 200_000,
    user_agent: str = DEFAULT_USER_AGENT,
    corpus: str | os.PathLike[str] | LocalBackend | None = None,
    offline: bool = False,
    name: str = "fetch_url",
    retries: int = 2,
    resolve: Resolver | None = None,
) -> Tool:
    """Build the ``fetch_url`` tool.

    Args:
        network: the network policy (a NetPolicy or its fields as a mapping); the ``allow_*``, ``allowed_hosts``
            and ``max_redirects`` options override single fields. Default: public addresses only.
        timeout_s: wall-clock limit of one fetch, redirects included.
        max_bytes: download cap; longer bodies are cut (a note says so).
        max_chars: characters of text returned when the model does not say.
        corpus: an offline corpus folder (or LocalBackend): its documents are served by their URL without network.
        offline: refuse every URL that is not in ``corpus``.
        resolve: replaces DNS resolution (tests).
    """
    policy = _policy(network, {
        "allow_private": allow_private, "allow_loopback": allow_loopback, "allow_link_local": allow_link_local,
        "allowed_hosts": allowed_hosts, "max_redirects": max_redirects,
    })
    if offline and corpus is None:
        raise ConfigError("fetch_url: offline=True needs a corpus to read from", hint="pass corpus=PATH")
    for option, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s), ("max_bytes", max_bytes)):
        if not value > 0:  # NaN too
            raise ConfigError(f"fetch_url: {option} must be a positive number, got {value!r}")
    if not 200 <= max_chars <= max_chars_limit:
        raise ConfigError(f"fetch_url: max_chars must be between 200 and max_chars_limit={max_chars_limit}, "
                          f"got {max_chars!r}")
    if retries < 0:
        raise ConfigError(f"fetch_url: retries must be 0 or more, got {retries!r}")
    local = corpus if isinstance(corpus, LocalBackend) or corpus is None else LocalBackend(corpus)
    fetcher = Fetcher(policy, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s, max_bytes=max_bytes,
                      user_agent=user_agent, resolve=resolve)

    async def fetch_url(url: str, max_chars: int = max_chars) -> str:
        page = _corpus_page(local, url) if local is not None else None
        if page is None:
            if offline:
                raise ToolExecutionError(
                    f"{url} is not in the offline corpus and this agent has no network access; use a URL from "
                    "web_search results", tool=name,
                )
            page = await fetcher.fetch(url)
        return render_page(page, max_chars)

    parameters = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "minLength": 1, "description": "The http(s) URL to read."},
            "max_chars": {
                "type": "integer", "minimum": 200, "maximum": max_chars_limit, "default": max_chars,
                "description": "Most characters of text to return; the rest is cut with a note.",
            },
        },
        "required": ["url"],
        "additionalProperties": False,
    }
    return Tool(
        name=name,
        description="Read a web page or document by URL: HTML comes back as readable markdown-like text, JSON "
        "pretty-printed, PDF as its text. Use it on URLs from web_search results.",
        parameters=parameters, fn=fetch_url, timeout_s=timeout_s + 5, retries=retries,
        metadata={"policy": policy},
    )


def search_tools(spec: str | SearchBackend = "ddgs", *, search_options: Mapping[str, Any] | None = None,
                 fetch_options: Mapping[str, Any] | None = None) -> list[Tool]:
    """``[web_search, fetch_url]`` for a ``--search`` spec, configured to work together.

    With ``local:PATH``, ``fetch_url`` reads the corpus documents by their URL and, unless ``fetch_options`` says
    ``offline=False``, refuses everything else (an offline corpus usually means an offline machine).

    Example::

        registry = ToolRegistry(search_tools("local:docs/"))
    """
    search = make_web_search(backend=spec, **dict(search_options or {}))
    fetch_opts = dict(fetch_options or {})
    backend = search.metadata["backend_object"]
    if isinstance(backend, LocalBackend):
        fetch_opts.setdefault("corpus", backend)
        fetch_opts.setdefault("offline", True)
    return [search, make_fetch_url(**fetch_opts)]
