"""Web search through the `ddgs` library (the maintained successor of duckduckgo-search, by the same author).

ddgs ships one class per engine (DuckDuckGo's HTML endpoint, Brave, Mojeek, Wikipedia...), each building a request,
sending it through its ``http_client`` and parsing the page. This backend drives those engine classes itself rather
than the ``DDGS`` aggregator, because ddgs 9 turns every non-200 answer into "No results found." and an agent must
tell "nothing found" from "rate limited" and "network down". Every request goes through a checking client that reads
the status first; that client is also the seam where tests put synthetic responses (the live web is not reachable
from CI).

Requests are spaced by a :class:`RateLimiter`; rate limits (HTTP 202/403/429, DuckDuckGo's bot page), server errors
and network errors are retried with exponential backoff (:mod:`keye_agent.retry`), honouring Retry-After; when one
engine keeps failing the next is tried; when all fail, a :class:`SearchError` says why, per engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from keye_agent.errors import ConfigError, SearchError, TransientError
from keye_agent.retry import Backoff, Retrier, parse_retry_after

from .ratelimit import RateLimiter
from .results import SearchResult, check_region, check_time_range, dedupe

_TIMELIMIT = {"day": "d", "week": "w", "month": "m", "year": "y"}
# What a blocked client gets from DuckDuckGo's HTML endpoint instead of results (HTTP 202, sometimes 200).
_BOT_PAGE_MARKERS = ("anomaly-modal", "bots use DuckDuckGo too")
DEFAULT_ENGINES = ("duckduckgo", "brave", "mojeek")


# TransientError.kind in the words of the final SearchError
_KIND_WORDS = {"connection": "network error", "timeout": "network error", "rate_limited": "rate limited",
               "server_error": "server error"}


class _Refused(Exception):
    """The engine answered with a client error that retrying will not fix."""

    kind = "refused"


def _unwrap(url: str) -> str:
    """The target of a DuckDuckGo redirect link (``//duckduckgo.com/l/?uddg=TARGET&rut=...``); others unchanged."""
    if "duckduckgo.com/l/" not in url:
        return url
    query = urlsplit("https:" + url if url.startswith("//") else url).query
    target = parse_qs(query).get("uddg")
    return target[0] if target else url


def _retry_after(resp: Any) -> float | None:
    """The Retry-After of a response from any client (the transport seam may hand back a plain dict of headers)."""
    headers = getattr(resp, "headers", None)
    get = getattr(headers, "get", None)
    if get is None:
        return None
    return parse_retry_after(get("retry-after") or get("Retry-After"))


class _CheckedClient:
    """Stands in for an engine's ``http_client``: passes requests to ``inner`` and turns what ddgs would silently
    drop (non-200 answers, bot pages, transport errors) into typed failures."""

    def __init__(self, inner: Any, engine: str, client: Any = None) -> None:
        self.inner = inner
        self.engine = engine
        # ddgs's engines reach through to the primp client for cookies and headers: keep the engine's own
        self.client = client if client is not None else getattr(inner, "client", None)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        from ddgs.exceptions import DDGSException

        try:
            resp = self.inner.request(method, url, *args, **kwargs)
        except DDGSException as e:  # ddgs wraps every transport failure (DNS, refused, TLS, timeout) in this
            raise TransientError(f"{self.engine}: {e}") from e
        status = int(resp.status_code)
        if status in (202, 403, 429) or (status == 200 and any(m in (resp.text or "") for m in _BOT_PAGE_MARKERS)):
            raise TransientError(f"{self.engine}: the service is rate-limiting this client (HTTP {status})",
                                 kind="rate_limited", status_code=status, retry_after=_retry_after(resp))
        if status >= 500:
            raise TransientError(f"{self.engine}: server error HTTP {status}", kind="server_error",
                                 status_code=status, retry_after=_retry_after(resp))
        if status != 200:
            raise _Refused(f"{self.engine}: the service refused the request (HTTP {status})")
        return resp

    def get(self, url: str, *args: Any, **kwargs: Any) -> Any:
        return self.request("GET", url, *args, **kwargs)

    def post(self, url: str, *args: Any, **kwargs: Any) -> Any:
        return self.request("POST", url, *args, **kwargs)


class DdgsBackend:
    """Search the web with ddgs engines, tried in order.

    Args:
        engines: ddgs text engines to try, in order (see ``ddgs.engines.ENGINES["text"]``).
        region: default region (``us-en``, ``cn-zh``, ``wt-wt``...).
        safesearch: ``on``, ``moderate`` or ``off``.
        timeout_s: per-request timeout.
        proxy: proxy URL for ddgs (``socks5h://...``, ``tb`` for Tor Browser), or None.
        min_interval_s: least time between two requests from this backend.
        max_attempts: attempts per engine before moving on (rate limits, server and network errors).
        backoff_s: first backoff; doubles each attempt (with jitter) up to ``max_backoff_s``.
        max_retry_after_s: the longest Retry-After honoured; an engine asking for more is given up on at once
            (the next engine is tried).
        deadline_s: the longest one search may take: no wait between attempts is started that would end past it
            (the web_search tool sets its own timeout here). None: no limit beyond ``max_attempts``.
        transport: an object with ``request(method, url, **kwargs)`` returning a response with ``status_code``,
            ``text``, ``content`` (and optionally ``headers``), used instead of ddgs's own client (tests, proxies).
    """

    name = "ddgs"

    def __init__(
        self,
        engines: str | Sequence[str] = DEFAULT_ENGINES,
        *,
        region: str = "us-en",
        safesearch: str = "moderate",
        timeout_s: float = 10.0,
        proxy: str | None = None,
        verify: bool | str = True,
        min_interval_s: float = 1.0,
        max_attempts: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 16.0,
        max_retry_after_s: float = 60.0,
        deadline_s: float | None = None,
        max_pages: int = 2,
        transport: Any | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        try:
            from ddgs.engines import ENGINES
        except ImportError as e:
            raise ConfigError("the ddgs search backend needs the ddgs package", hint="pip install 'keye-agent[search]'") from e
        names = [e.strip() for e in engines.split(",")] if isinstance(engines, str) else list(engines)
        available = ENGINES.get("text", {})
        unknown = [n for n in names if n not in available]
        if not names or unknown:
            raise ConfigError(
                f"unknown ddgs engine(s) {unknown or names}; available text engines: {', '.join(sorted(available))}"
            )
        if safesearch not in ("on", "moderate", "off"):
            raise ConfigError(f"safesearch must be 'on', 'moderate' or 'off', got {safesearch!r}")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {max_attempts}")
        self.engine_names = names
        self.region = check_region(region) or "us-en"
        self.safesearch = safesearch
        self.timeout_s = timeout_s
        self.proxy = proxy
        self.verify = verify
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.deadline_s = deadline_s
        self.backoff = Backoff(base_s=backoff_s, max_s=max_backoff_s, max_retry_after_s=max_retry_after_s)
        self.max_pages = max(1, max_pages)
        self.transport = transport
        self.limiter = RateLimiter(min_interval_s, **({"sleep": sleep} if sleep else {}))
        self._sleep = sleep
        self._engines: dict[str, Any] = {}
        self._classes = available
        self.cache_key = "ddgs:" + ",".join(names) + ":" + safesearch

    def _engine(self, name: str) -> Any:
        engine = self._engines.get(name)
        if engine is None:
            engine = self._classes[name](proxy=self.proxy, timeout=int(max(1, self.timeout_s)), verify=self.verify)
            engine.http_client = _CheckedClient(self.transport or engine.http_client, name, engine.http_client.client)
            self._engines[name] = engine
        return engine

    def _on_retry(self, exc: BaseException, wait: float, attempt: int) -> None:
        if isinstance(exc, TransientError) and exc.kind == "rate_limited":
            self.limiter.penalise(wait)  # other threads searching through this backend back off as well

    def _one_page(self, engine: Any, query: str, region: str, timelimit: str | None, page: int,
                  deadline: float | None) -> list[Any]:
        def once() -> list[Any]:
            self.limiter.acquire()
            return engine.search(query, region=region, safesearch=self.safesearch, timelimit=timelimit,
                                 page=page) or []

        retrier = Retrier(self.backoff, self.max_attempts, deadline_s=_left(deadline),
                          transient=lambda e: isinstance(e, TransientError))
        return retrier.run(once, sleep=self._sleep or time.sleep, on_retry=self._on_retry)

    def _search_engine(self, name: str, query: str, max_results: int, region: str, timelimit: str | None,
                       deadline: float | None) -> list[SearchResult]:
        engine = self._engine(name)
        found: list[SearchResult] = []
        for page in range(1, self.max_pages + 1):
            raw = self._one_page(engine, query, region, timelimit, page, deadline)
            before = len(found)
            for item in raw:
                url = _unwrap(getattr(item, "href", "") or "")
                if not url.startswith(("http://", "https://")) or "duckduckgo.com/y.js" in url:
                    continue  # relative links, and DuckDuckGo's ad redirects
                found.append(SearchResult(
                    title=getattr(item, "title", "") or "", url=url, snippet=getattr(item, "body", "") or "",
                    source=name,
                ))
            found = dedupe(found)
            if len(found) >= max_results or len(found) == before:
                break
        return found[:max_results]

    def search(
        self, query: str, *, max_results: int = 10, region: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        """Results from the first engine that answers; [] when every engine answered with nothing."""
        from ddgs.exceptions import DDGSException

        query = " ".join(query.split())
        if not query:
            raise SearchError("the search query is empty", hint="pass some keywords")
        region = check_region(region) or self.region
        timelimit = _TIMELIMIT.get(check_time_range(time_range) or "")
        failures: list[tuple[str, str, str]] = []
        deadline = None if self.deadline_s is None else time.monotonic() + self.deadline_s
        for name in self.engine_names:
            try:
                results = self._search_engine(name, query, max_results, region, timelimit, deadline)
            except TransientError as e:
                failures.append((name, _KIND_WORDS.get(e.kind, e.kind), str(e)))
                continue
            except _Refused as e:
                failures.append((name, e.kind, str(e)))
                continue
            except (DDGSException, ValueError, KeyError, IndexError) as e:  # an engine's parser choked on a page
                failures.append((name, "unreadable answer", f"{name}: {type(e).__name__}: {e}"))
                continue
            if results:
                return results
        if len(failures) < len(self.engine_names):
            return []  # at least one engine answered, with nothing
        raise _search_error(failures, self.max_attempts)


def _left(deadline: float | None) -> float | None:
    """Seconds from now to a monotonic ``deadline`` (never negative), or None for none."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _search_error(failures: list[tuple[str, str, str]], attempts: int) -> SearchError:
    kinds = {k for _, k, _ in failures}
    detail = "; ".join(msg for _, _, msg in failures)
    if kinds == {"network error"}:
        return SearchError(
            f"web search failed: the network is unreachable ({detail})",
            hint="check the connection or proxy; on an air-gapped machine use the offline backend (--search local:PATH)",
        )
    if kinds <= {"rate limited", "server error"}:
        return SearchError(
            f"web search failed: every engine refused or rate-limited this client after {attempts} attempts each "
            f"({detail})",
            hint="wait a few minutes, lower the request rate (min_interval_s), or use a SearXNG instance",
        )
    return SearchError(f"web search failed on every engine ({detail})")
