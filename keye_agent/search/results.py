"""The shape every search backend answers in: `SearchResult`, the `SearchBackend` protocol, and the helpers that
normalise results (canonical URLs, de-duplication, re-ranking)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from keye_agent.errors import SearchError

TimeRange = Literal["day", "week", "month", "year"]
TIME_RANGES: tuple[str, ...] = ("day", "week", "month", "year")


@dataclass(frozen=True)
class SearchResult:
    """One hit, the same shape whatever backend found it.

    ``rank`` is 1-based within one answer; ``source`` names where it came from (``duckduckgo``, ``searxng:google``,
    ``local``).
    """

    title: str
    url: str
    snippet: str
    source: str
    rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        return cls(
            title=str(data.get("title", "")),
            url=str(data.get("url", "")),
            snippet=str(data.get("snippet", "")),
            source=str(data.get("source", "")),
            rank=int(data.get("rank", 0)),
        )


@runtime_checkable
class SearchBackend(Protocol):
    """What `web_search` needs from a search engine.

    ``search`` is synchronous (the tool runs it in a worker thread); it returns at most ``max_results`` results
    ranked best first and raises :class:`keye_agent.errors.SearchError` when the engine cannot answer. An empty list
    means the engine answered and found nothing.

    ``region`` is a ``country-language`` code such as ``us-en`` or ``cn-zh`` (None: the backend's default);
    ``time_range`` is one of ``day``, ``week``, ``month``, ``year`` (None: any time).
    """

    name: str

    def search(
        self, query: str, *, max_results: int = 10, region: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]: ...


# Query parameters that identify a click or a campaign, not a page: two URLs that differ only in these are one page.
_TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "mc_cid", "mc_eid", "igshid", "ref_src",
    "_hsenc", "_hsmi", "spm", "si",
})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str:
    """A key under which the same page reached by different URLs compares equal.

    Lower-cases scheme and host, drops ``www.``, default ports, the fragment, tracking parameters (``utm_*``,
    ``fbclid``...) and a trailing slash, sorts the query, and treats http and https as one. Meant for comparing
    URLs, not for fetching them.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))
    host = (parts.hostname or "").lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in _TRACKING_PARAMS
    ]
    return urlunsplit(("https", netloc, path, urlencode(sorted(query)), ""))


def dedupe(results: Iterable[SearchResult], max_results: int | None = None) -> list[SearchResult]:
    """Keep the first result of each canonical URL (results come best first), drop ones without a URL, and number
    the survivors 1..n."""
    seen: set[str] = set()
    out: list[SearchResult] = []
    for r in results:
        if not r.url:
            continue
        key = canonical_url(r.url)
        if key in seen:
            continue
        seen.add(key)
        out.append(replace(r, rank=len(out) + 1))
        if max_results is not None and len(out) >= max_results:
            break
    return out


def check_time_range(time_range: str | None) -> str | None:
    """``time_range`` unchanged when valid (None, or one of day/week/month/year), else a SearchError."""
    if time_range in (None, ""):
        return None
    tr = str(time_range).lower()
    if tr not in TIME_RANGES:
        raise SearchError(f"time_range must be one of {', '.join(TIME_RANGES)} (or omitted), got {time_range!r}")
    return tr


def check_region(region: str | None) -> str | None:
    """``region`` lower-cased when it looks like ``country-language`` (``us-en``, ``cn-zh``, ``wt-wt``)."""
    if region in (None, ""):
        return None
    r = str(region).strip().lower().replace("_", "-")
    parts = r.split("-")
    if len(parts) != 2 or not all(p.isalpha() and 2 <= len(p) <= 3 for p in parts):
        raise SearchError(
            f"region must look like 'country-language', e.g. 'us-en', 'uk-en', 'cn-zh' or 'wt-wt' (no region), "
            f"got {region!r}"
        )
    return r


def format_results(query: str, results: list[SearchResult]) -> str:
    """The text the model reads: one numbered block per result, with its URL so it can cite or fetch it."""
    if not results:
        return f"No results for {query!r}. Try fewer or different keywords."
    lines = [f"Results for {query!r}:"]
    for r in results:
        lines.append(f"\n[{r.rank}] {r.title or '(untitled)'}\nURL: {r.url}")
        if r.snippet:
            lines.append(r.snippet)
    return "\n".join(lines)
