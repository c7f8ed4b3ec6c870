"""The ddgs backend with its network layer replaced by SYNTHETIC responses.

This machine cannot reach the web, so the pages below are synthetic: hand-written to the shape of the services' real
answers (DuckDuckGo's HTML endpoint with its ``result__body`` blocks, ``uddg`` redirect links and ``y.js`` ads, its
HTTP 202 bot page; Mojeek's ``results-standard`` list), not recorded from them. They go through ddgs's own engine
classes and parsers; only the transport (``request(method, url, **kwargs)``) is ours. One test drives the real ddgs
HTTP client (primp) at a closed loopback proxy to show how an unreachable network is reported.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from ddgs.exceptions import DDGSException, TimeoutException

from keye_agent.errors import SearchError
from keye_agent.search import DdgsBackend, make_web_search
from keye_agent.search.ratelimit import RateLimiter
from keye_agent.tools import ToolRegistry
from keye_agent.types import ToolCall


def ddg_result(href: str, title: str, snippet: str, *, ad: bool = False) -> str:
    kind = "result--ad" if ad else "web-result"
    return f"""
  <div class="result results_links results_links_deep {kind} ">
    <div class="links_main links_deep result__body">
      <h2 class="result__title"><a rel="nofollow" class="result__a" href="{href}">{title}</a></h2>
      <div class="result__extras"><div class="result__extras__url">
        <a class="result__url" href="{href}">{urlsplit(href).netloc}</a></div></div>
      <a class="result__snippet" href="{href}">{snippet}</a>
      <div class="clear"></div>
    </div>
  </div>"""


def ddg_page(results: list[str]) -> str:
    body = "\n".join(results) if results else '<div class="no-results">No  results.</div>'
    return f"""<!DOCTYPE html><html><head><title>keye at DuckDuckGo</title></head><body>
<div id="links" class="results">{body}</div>
<div class="nav-link"><form action="/html/" method="post"><input type="submit" class="btn btn--alt" value="Next"></form>
</div></body></html>"""


DDG_BOT_PAGE = """<!DOCTYPE html><html><body><div class="anomaly-modal__mask"><div class="anomaly-modal__modal">
<div class="anomaly-modal__title">Unfortunately, bots use DuckDuckGo too.</div>
<div class="anomaly-modal__description">Please complete the following challenge to confirm this search was made by a
human.</div></div></div></body></html>"""

DDG_RESULTS = ddg_page([
    ddg_result("https://duckduckgo.com/y.js?ad_domain=ads.example&ad_provider=bing", "Buy <b>Keye</b> now", "Ad", ad=True),
    ddg_result("https://github.com/Kwai-Keye/Keye", "GitHub - Kwai-<b>Keye</b>/Keye", "Keye-VL is a multimodal model"),
    ddg_result("//duckduckgo.com/l/?uddg=https%3A%2F%2Farxiv.org%2Fabs%2F2509.01563&amp;rut=f00d",
               "Kwai <b>Keye</b>-VL 1.5 Technical Report", "We present Keye-VL-1.5, which addresses&#x27;video&#x27;"),
    ddg_result("https://github.com/Kwai-Keye/Keye/?utm_source=ddg#readme", "Kwai-Keye duplicate", "Same page again"),
    ddg_result("https://huggingface.co/Kwai-Keye/Keye-VL-2.0", "Kwai-Keye/Keye-VL-2.0 · Hugging Face", "Model card"),
])

MOJEEK_RESULTS = """<!DOCTYPE html><html><body><div class="results-container"><ul class="results-standard">
<li class="r1"><a class="ob" href="https://www.kuaishou.com/about">https://www.kuaishou.com/about</a>
<h2><a class="title" href="https://www.kuaishou.com/about">About Kuaishou</a></h2>
<p class="s">Kuaishou Technology is a content community and social platform.</p></li>
<li class="r2"><a class="ob" href="https://en.wikipedia.org/wiki/Kuaishou">https://en.wikipedia.org/wiki/Kuaishou</a>
<h2><a class="title" href="https://en.wikipedia.org/wiki/Kuaishou">Kuaishou - Wikipedia</a></h2>
<p class="s">Kuaishou is a Chinese short-video platform.</p></li>
</ul></div></body></html>"""


@dataclass
class Resp:
    status_code: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content(self) -> bytes:
        return self.text.encode()


class SyntheticWeb:
    """Answers by host from queued responses (the last one repeats); an exception in the queue is raised, as ddgs's
    own client raises DDGSException/TimeoutException for transport failures."""

    def __init__(self, answers: dict[str, list[Resp | Exception]]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Resp:
        self.requests.append((method, url, kwargs))
        queue = self.answers[urlsplit(url).hostname or ""]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def count(self, host: str) -> int:
        return sum(1 for _, url, _ in self.requests if urlsplit(url).hostname == host)


DDG = "html.duckduckgo.com"
MOJEEK = "www.mojeek.com"


class FakeTime:
    """A clock that only moves when slept on, so backoff waits are recorded without being spent."""

    def __init__(self, sleeps: list[float]) -> None:
        self.now = 1000.0
        self.sleeps = sleeps

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def backend(web: SyntheticWeb, engines: str = "duckduckgo", sleeps: list[float] | None = None, **kw: Any) -> DdgsBackend:
    fake = FakeTime(sleeps if sleeps is not None else [])
    b = DdgsBackend(engines, transport=web, sleep=fake.sleep, **{"backoff_s": 0.5, "max_pages": 1, **kw})
    b.limiter = RateLimiter(0, clock=fake.clock, sleep=fake.sleep)
    return b


def test_results_are_parsed_normalised_and_deduplicated() -> None:
    web = SyntheticWeb({DDG: [Resp(200, DDG_RESULTS)]})
    results = backend(web).search("kwai  keye", max_results=10, region="uk-en", time_range="week")
    assert [r.url for r in results] == [
        "https://github.com/Kwai-Keye/Keye",
        "https://arxiv.org/abs/2509.01563",  # unwrapped from DuckDuckGo's redirect link
        "https://huggingface.co/Kwai-Keye/Keye-VL-2.0",
    ]  # the ad is gone, and the utm/fragment/slash variant of the GitHub page is a duplicate
    assert [r.rank for r in results] == [1, 2, 3] and {r.source for r in results} == {"duckduckgo"}
    assert results[0].title == "GitHub - Kwai-Keye/Keye"  # markup stripped
    assert results[1].snippet == "We present Keye-VL-1.5, which addresses'video'"  # entities decoded
    [(method, url, kwargs)] = web.requests
    assert method == "POST" and url == "https://html.duckduckgo.com/html/"
    assert kwargs["data"]["q"] == "kwai keye" and kwargs["data"]["l"] == "uk-en" and kwargs["data"]["df"] == "w"


def test_max_results_is_respected() -> None:
    web = SyntheticWeb({DDG: [Resp(200, DDG_RESULTS)]})
    assert len(backend(web).search("keye", max_results=2)) == 2


def test_a_second_page_is_asked_for_when_the_first_is_short() -> None:
    page2 = ddg_page([ddg_result("https://www.kuaishou.com/", "Kuaishou", "Short videos"),
                      ddg_result("https://huggingface.co/Kwai-Keye/Keye-VL-2.0", "dup", "already seen")])
    web = SyntheticWeb({DDG: [Resp(200, DDG_RESULTS), Resp(200, page2)]})
    results = backend(web, max_pages=3).search("keye", max_results=10)
    assert [r.url for r in results][-1] == "https://www.kuaishou.com/" and len(results) == 4
    assert [r.rank for r in results] == [1, 2, 3, 4]
    assert web.requests[1][2]["data"]["s"] == "10"  # DuckDuckGo's offset for page 2
    assert web.count(DDG) == 3  # the third page (a repeat of page 2) added nothing: stop


def test_rate_limit_is_retried_with_backoff_then_succeeds() -> None:
    sleeps: list[float] = []
    web = SyntheticWeb({DDG: [Resp(202, DDG_BOT_PAGE), Resp(200, DDG_BOT_PAGE), Resp(200, DDG_RESULTS)]})
    results = backend(web, sleeps=sleeps, max_attempts=3).search("keye")
    assert len(results) == 3 and web.count(DDG) == 3
    # doubling, with jitter taking off up to half (one formula for every caller: keye_agent.retry.Backoff)
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_retry_after_is_honoured() -> None:
    sleeps: list[float] = []
    web = SyntheticWeb({DDG: [Resp(429, "Too Many Requests", {"Retry-After": "12"}), Resp(200, DDG_RESULTS)]})
    assert backend(web, sleeps=sleeps).search("keye")
    assert sleeps == [12.0]  # what the service asked for, more than the 0.5 s backoff


def test_blocked_engine_falls_back_to_the_next() -> None:
    web = SyntheticWeb({DDG: [Resp(202, DDG_BOT_PAGE)], MOJEEK: [Resp(200, MOJEEK_RESULTS)]})
    results = backend(web, engines="duckduckgo,mojeek", max_attempts=2).search("kuaishou")
    assert web.count(DDG) == 2 and web.count(MOJEEK) == 1
    assert [r.url for r in results] == ["https://www.kuaishou.com/about", "https://en.wikipedia.org/wiki/Kuaishou"]
    assert results[0].source == "mojeek" and results[0].snippet.startswith("Kuaishou Technology")


def test_rate_limited_everywhere_is_a_clear_error() -> None:
    web = SyntheticWeb({DDG: [Resp(202, DDG_BOT_PAGE)], MOJEEK: [Resp(403, "Forbidden")]})
    with pytest.raises(SearchError) as ei:
        backend(web, engines="duckduckgo,mojeek", max_attempts=3).search("keye")
    msg = str(ei.value)
    assert "rate-limited" in msg and "after 3 attempts" in msg and "HTTP 202" in msg and "HTTP 403" in msg
    assert "SearXNG" in msg  # the hint names a way out
    assert web.count(DDG) == 3 and web.count(MOJEEK) == 3


def test_empty_results_are_an_empty_list_not_an_error() -> None:
    web = SyntheticWeb({DDG: [Resp(200, ddg_page([]))], MOJEEK: [Resp(200, "<html><body><p>No pages found</p></body></html>")]})
    assert backend(web, engines="duckduckgo,mojeek").search("qwzxv nothing matches") == []
    assert web.count(DDG) == 1 and web.count(MOJEEK) == 1  # nothing to retry


def test_network_errors_are_retried_then_reported_as_unreachable() -> None:
    err = DDGSException("ConnectError: ConnectError('error sending request: dns error: failed to lookup address')")
    web = SyntheticWeb({DDG: [TimeoutException("operation timed out"), err]})
    with pytest.raises(SearchError, match="network is unreachable") as ei:
        backend(web, max_attempts=2).search("keye")
    assert "offline backend" in str(ei.value) and web.count(DDG) == 2


def test_a_timeout_then_success_recovers() -> None:
    web = SyntheticWeb({DDG: [TimeoutException("operation timed out"), Resp(200, DDG_RESULTS)]})
    assert len(backend(web).search("keye")) == 3


def test_client_errors_are_not_retried() -> None:
    web = SyntheticWeb({DDG: [Resp(400, "Bad Request")]})
    with pytest.raises(SearchError, match="refused the request"):
        backend(web, max_attempts=3).search("keye")
    assert web.count(DDG) == 1


def test_real_ddgs_client_with_an_unreachable_proxy() -> None:
    with socket.socket() as s:  # a port nobody listens on: the real primp client fails to connect
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = DdgsBackend("duckduckgo", proxy=f"http://127.0.0.1:{port}", timeout_s=5, max_attempts=2, backoff_s=0.05,
                    min_interval_s=0)
    with pytest.raises(SearchError, match="network is unreachable"):
        b.search("keye")


def test_bad_options_are_config_errors() -> None:
    from keye_agent.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown ddgs engine"):
        DdgsBackend("altavista")
    with pytest.raises(ConfigError, match="safesearch"):
        DdgsBackend(safesearch="maybe")
    with pytest.raises(SearchError, match="region"):
        backend(SyntheticWeb({DDG: [Resp(200, DDG_RESULTS)]})).search("keye", region="english")


def test_web_search_tool_caches_answers_on_disk(tmp_path, monkeypatch) -> None:
    web = SyntheticWeb({DDG: [Resp(200, DDG_RESULTS)]})
    tool = make_web_search(backend="ddgs:duckduckgo", transport=web, min_interval_s=0, max_pages=1,
                           cache_dir=tmp_path, cache_ttl_s=60)
    registry = ToolRegistry([tool])
    call = ToolCall(id="1", name="web_search", arguments={"query": "kwai keye"})
    [first] = registry.dispatch_sync([call])
    [second] = registry.dispatch_sync([call])
    assert first.ok and second.ok and first.content == second.content and web.count(DDG) == 1
    assert "[2] Kwai Keye-VL 1.5 Technical Report\nURL: https://arxiv.org/abs/2509.01563" in first.content
    assert list(tmp_path.glob("*/*.json"))
    registry.dispatch_sync([ToolCall(id="2", name="web_search", arguments={"query": "kwai keye", "max_results": 2})])
    assert web.count(DDG) == 2  # a different question is a different entry

    import keye_agent.search.cache as cache_mod

    real = cache_mod.time.time
    monkeypatch.setattr(cache_mod.time, "time", lambda: real() + 61)
    registry.dispatch_sync([call])
    assert web.count(DDG) == 3  # expired: asked again


def test_web_search_tool_reports_search_errors_to_the_model(tmp_path) -> None:
    web = SyntheticWeb({DDG: [Resp(202, DDG_BOT_PAGE)]})
    tool = make_web_search(backend="ddgs:duckduckgo", transport=web, min_interval_s=0, backoff_s=0.01,
                           max_backoff_s=0.01, max_attempts=2, cache_dir=tmp_path)
    [res] = ToolRegistry([tool]).dispatch_sync([ToolCall(id="1", name="web_search", arguments={"query": "keye"})])
    assert not res.ok and res.error_type == "SearchError" and "rate-limit" in res.error
    assert not list(tmp_path.glob("*/*.json"))  # failures are not cached


def test_rate_limiter_spaces_calls() -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    limiter = RateLimiter(2.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire()
    assert waits == [2.0, 2.0]
    now[0] += 10
    assert limiter.acquire() == 0
    limiter.penalise(30)
    assert limiter.acquire() == pytest.approx(30)


def test_a_wait_never_outlives_the_search_deadline() -> None:
    """Retry-After: 12 from the only engine, in a search allowed 5 s: no sleep, the engine counts as rate-limited."""
    sleeps: list[float] = []
    web = SyntheticWeb({DDG: [Resp(429, "Too Many Requests", {"Retry-After": "12"}), Resp(200, DDG_RESULTS)]})
    with pytest.raises(SearchError, match="rate-limit"):
        backend(web, sleeps=sleeps, deadline_s=5.0).search("keye")
    assert sleeps == [] and web.count(DDG) == 1
