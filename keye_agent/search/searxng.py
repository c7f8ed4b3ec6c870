"""Search through a SearXNG instance's JSON API (``GET /search?q=...&format=json``).

SearXNG is the self-hosted metasearch engine many users run; its JSON output must be enabled in the instance's
``settings.yml`` (``search.formats: [html, json]``), otherwise it answers 403, which is reported as such. The URL is
the user's own configuration, so it is trusted (a SearXNG on localhost or the LAN is the normal case) and not
subject to the fetch tool's private-address guard.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from keye_agent.errors import ConfigError, SearchError, TransientError, redact
from keye_agent.retry import Backoff, Retrier, parse_retry_after
from keye_agent.tools.decoding import ACCEPT_ENCODING, DecodingError, read_decoded_sync

from .ratelimit import RateLimiter
from .results import SearchResult, check_region, check_time_range, dedupe

_SAFESEARCH = {"off": 0, "moderate": 1, "on": 2, "strict": 2}
MAX_RESPONSE_BYTES = 8 * 2**20
"""The most of a SearXNG answer that is read, decoded (a page of results is tens of kB)."""


def _language(region: str | None) -> str | None:
    """ddgs-style ``us-en`` to SearXNG's ``en-US``; ``wt-wt`` (no region) to None."""
    if not region or region.startswith("wt-"):
        return None
    country, lang = region.split("-")
    return f"{lang}-{country.upper()}"


class SearxngBackend:
    """Search a SearXNG instance.

    Args:
        base_url: the instance, e.g. ``http://localhost:8888`` (``/search`` is appended).
        categories: SearXNG categories, e.g. ``general`` or ``general,news``.
        engines: restrict to these SearXNG engines (comma-separated or a list), or None for the instance default.
        safesearch: ``off``, ``moderate`` or ``on``.
        region: default region (``us-en``...), sent as SearXNG's ``language``.
        timeout_s: per-request timeout.
        headers: extra headers (an auth token for a private instance; redacted from errors).
        min_interval_s: least time between two requests.
        max_attempts: attempts on HTTP 429/5xx and connection errors.
        backoff_s: first backoff; doubles each attempt (with jitter) up to ``max_backoff_s``.
        max_retry_after_s: the longest Retry-After honoured; a longer ask fails the search at once.
        deadline_s: the longest one search may take: no wait between attempts is started that would end past it
            (the web_search tool sets its own timeout here). None: no limit beyond ``max_attempts``.
    """

    name = "searxng"

    def __init__(
        self,
        base_url: str,
        *,
        categories: str = "general",
        engines: str | Sequence[str] | None = None,
        safesearch: str = "moderate",
        region: str | None = None,
        timeout_s: float = 15.0,
        headers: dict[str, str] | None = None,
        min_interval_s: float = 0.0,
        max_attempts: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 16.0,
        max_retry_after_s: float = 60.0,
        deadline_s: float | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"SearXNG base_url must be an http(s) URL such as http://localhost:8888, got {base_url!r}"
            )
        if safesearch not in _SAFESEARCH:
            raise ConfigError(f"safesearch must be one of {', '.join(_SAFESEARCH)}, got {safesearch!r}")
        path = parts.path.rstrip("/")
        if path.endswith("/search"):
            path = path[: -len("/search")]
        self.base_url = f"{parts.scheme}://{parts.netloc}{path}"
        self.categories = categories
        self.engines = ",".join(engines) if isinstance(engines, (list, tuple)) else engines
        self.safesearch = _SAFESEARCH[safesearch]
        self.region = check_region(region)
        self.timeout_s = timeout_s
        self.headers = {"Accept": "application/json", **(headers or {})}
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.deadline_s = deadline_s
        self.backoff = Backoff(base_s=backoff_s, max_s=max_backoff_s, max_retry_after_s=max_retry_after_s)
        self.limiter = RateLimiter(min_interval_s, **({"sleep": sleep} if sleep else {}))
        self._sleep = sleep
        self.cache_key = f"searxng:{self.base_url}:{categories}:{self.engines}:{safesearch}"

    def _params(self, query: str, region: str | None, time_range: str | None, page: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "q": query, "format": "json", "pageno": page, "safesearch": self.safesearch,
            "categories": self.categories,
        }
        if self.engines:
            params["engines"] = self.engines
        lang = _language(region)
        if lang:
            params["language"] = lang
        if time_range:
            params["time_range"] = time_range
        return params

    def _get(self, client: httpx.Client, params: dict[str, Any]) -> dict[str, Any]:
        self.limiter.acquire()
        try:
            with client.stream("GET", f"{self.base_url}/search", params=params,
                               headers={"Accept-Encoding": ACCEPT_ENCODING}) as resp:
                status, headers = resp.status_code, resp.headers
                body, over = read_decoded_sync(resp, MAX_RESPONSE_BYTES if status == 200 else 4096)
        except httpx.TransportError as e:
            raise TransientError(f"cannot reach SearXNG at {self.base_url}: {type(e).__name__}: {e}") from e
        except DecodingError as e:
            raise SearchError(f"SearXNG at {self.base_url} sent a body that cannot be read: {e}") from None
        if status == 429 or status >= 500:
            raise TransientError(
                f"SearXNG at {self.base_url} answered HTTP {status}",
                kind="rate_limited" if status == 429 else "server_error", status_code=status,
                retry_after=parse_retry_after(headers.get("retry-after")),
            )
        if status == 403:
            raise SearchError(
                f"SearXNG at {self.base_url} refused the JSON API (HTTP 403)",
                hint="enable it in the instance's settings.yml: search: formats: [html, json]",
            )
        text = body.decode("utf-8", "replace")
        if status != 200:
            raise SearchError(f"SearXNG at {self.base_url} answered HTTP {status}: {text[:200]!r}")
        if over:
            raise SearchError(f"SearXNG at {self.base_url} answered more than {MAX_RESPONSE_BYTES:,} bytes (decoded); "
                              "read no further", hint="ask for fewer results (max_results)")
        try:
            data = json.loads(text)
        except ValueError as e:
            raise SearchError(
                f"SearXNG at {self.base_url} did not answer JSON (content-type {headers.get('content-type')!r})",
                hint="check that base_url points at a SearXNG instance with the JSON format enabled",
            ) from e
        if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
            raise SearchError(f"SearXNG at {self.base_url} answered JSON without a 'results' list")
        return data

    def search(
        self, query: str, *, max_results: int = 10, region: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        query = " ".join(query.split())
        if not query:
            raise SearchError("the search query is empty", hint="pass some keywords")
        region = check_region(region) or self.region
        time_range = check_time_range(time_range)
        found: list[SearchResult] = []
        deadline = None if self.deadline_s is None else time.monotonic() + self.deadline_s
        with httpx.Client(timeout=self.timeout_s, headers=self.headers, follow_redirects=True) as client:
            for page in range(1, 4):
                params = self._params(query, region, time_range, page)
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                retrier = Retrier(self.backoff, self.max_attempts, deadline_s=left,
                                  transient=lambda e: isinstance(e, TransientError))
                try:
                    data = retrier.run(functools.partial(self._get, client, params), sleep=self._sleep or time.sleep)
                except TransientError as e:
                    raise SearchError(
                        redact(f"SearXNG search failed ({retrier.outcome() or 'after 1 attempt'}): {e}"),
                        hint="check that the instance is running and reachable, or raise max_attempts",
                    ) from None
                before = len(found)
                for item in data.get("results", []):
                    if not isinstance(item, dict) or not str(item.get("url", "")).startswith(("http://", "https://")):
                        continue
                    engine = item.get("engine") or ",".join(item.get("engines") or []) or "?"
                    found.append(SearchResult(
                        title=" ".join(str(item.get("title") or "").split()),
                        url=str(item["url"]),
                        snippet=" ".join(str(item.get("content") or "").split()),
                        source=f"searxng:{engine}",
                    ))
                found = dedupe(found)
                if len(found) >= max_results or len(found) == before:
                    break
        return found[:max_results]
