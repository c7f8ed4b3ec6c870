"""The SearXNG backend against a real HTTP server on loopback answering ``/search?format=json``.

The server's answers follow the shape of SearXNG's JSON API (``query``, ``number_of_results``, ``results`` with
``url``/``title``/``content``/``engine``/``engines``/``score``, ``answers``, ``suggestions``,
``unresponsive_engines``); the data in them is made up.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import parse_qs, urlsplit

import pytest

from keye_agent.errors import ConfigError, SearchError
from keye_agent.search import CachedBackend, DiskCache, SearxngBackend, search_backend_from_spec


def hit(url: str, title: str, content: str, engines: list[str]) -> dict:
    return {
        "url": url, "title": title, "content": content, "engine": engines[0], "engines": engines,
        "parsed_url": list(urlsplit(url)) , "template": "default.html", "positions": [1], "score": 2.5,
        "category": "general", "publishedDate": None, "thumbnail": "",
    }


PAGE_1 = [
    hit("https://www.python.org/", "Welcome to Python.org", "The official home of the  Python Programming Language",
        ["google", "duckduckgo"]),
    hit("https://docs.python.org/3/", "3.13 Documentation", "Python 3.13 documentation", ["bing"]),
    hit("https://python.org/?utm_source=searx", "Python duplicate", "same page", ["qwant"]),
    hit("ftp://old.example/python", "FTP mirror", "not a web page", ["mojeek"]),
]
PAGE_2 = [hit("https://en.wikipedia.org/wiki/Python_(programming_language)", "Python (programming language)",
              "Python is a high-level, general-purpose programming language.", ["wikipedia"])]


def answer(results: list[dict], query: str) -> bytes:
    return json.dumps({
        "query": query, "number_of_results": 0, "results": results, "answers": [], "corrections": [],
        "infoboxes": [], "suggestions": ["python tutorial"], "unresponsive_engines": [["brave", "timeout"]],
    }).encode()


@pytest.fixture
def searx(server):
    seen: list[dict[str, list[str]]] = []

    def search(h) -> None:
        params = parse_qs(urlsplit(h.path).query)
        seen.append(params)
        if params.get("format") != ["json"]:
            server.send(h, 403, b"Forbidden", "text/plain")
            return
        page = int(params.get("pageno", ["1"])[0])
        results = {1: PAGE_1, 2: PAGE_2}.get(page, [])
        server.send(h, 200, answer(results, params["q"][0]), "application/json")

    server.routes["/search"] = search
    server.seen = seen
    return server


def test_results_are_normalised(searx) -> None:
    b = SearxngBackend(searx.base, region="de-de")
    results = b.search("python", max_results=3, time_range="month")
    assert [r.url for r in results] == [
        "https://www.python.org/", "https://docs.python.org/3/",
        "https://en.wikipedia.org/wiki/Python_(programming_language)",
    ]  # duplicate (tracking parameter) and non-web result dropped; page 2 asked for to fill max_results
    assert [r.rank for r in results] == [1, 2, 3]
    assert results[0].source == "searxng:google" and results[0].snippet == "The official home of the Python Programming Language"
    first = searx.seen[0]
    assert first["q"] == ["python"] and first["format"] == ["json"] and first["language"] == ["de-DE"]
    assert first["time_range"] == ["month"] and first["pageno"] == ["1"] and first["categories"] == ["general"]
    assert searx.seen[1]["pageno"] == ["2"]


def test_stops_when_a_page_adds_nothing(searx) -> None:
    results = SearxngBackend(searx.base + "/search").search("python", max_results=20)  # /search suffix accepted
    assert len(results) == 3 and len(searx.seen) == 3


def test_json_format_disabled_is_explained(server) -> None:
    server.routes["/search"] = lambda h: server.send(h, 403, b"<html>Forbidden</html>", "text/html")
    with pytest.raises(SearchError, match="HTTP 403") as ei:
        SearxngBackend(server.base).search("python")
    assert "formats: [html, json]" in str(ei.value)
    assert server.hits["/search"] == 1  # not retried


def test_rate_limit_is_retried(server) -> None:
    calls = {"n": 0}

    def search(h) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            server.send(h, 429, b"Too Many Requests", "text/plain", {"Retry-After": "3"})
        else:
            server.send(h, 200, answer(PAGE_2, "python"), "application/json")

    server.routes["/search"] = search
    waits: list[float] = []
    results = SearxngBackend(server.base, sleep=waits.append).search("python", max_results=1)
    assert results[0].url.startswith("https://en.wikipedia.org/") and calls["n"] == 2 and waits == [3.0]


def test_a_retry_after_past_the_deadline_is_not_waited(server) -> None:
    server.routes["/search"] = lambda h: server.send(h, 503, b"busy", "text/plain", {"Retry-After": "3"})
    waits: list[float] = []
    with pytest.raises(SearchError, match=r"asked to wait 3 s, more than the [\d.]+ s left before this call's deadline"):
        SearxngBackend(server.base, deadline_s=1.0, sleep=waits.append).search("python")
    assert waits == []


def test_web_search_gives_the_backend_its_timeout_as_deadline(server) -> None:
    from keye_agent.search.tools import make_web_search

    t = make_web_search(backend=f"searxng:{server.base}", cache=False, timeout_s=20.0)
    assert t.metadata["backend_object"].deadline_s == 20.0


def test_unreachable_instance_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    with pytest.raises(SearchError, match="cannot reach SearXNG") as ei:
        SearxngBackend(f"http://127.0.0.1:{port}", max_attempts=2, sleep=waits.append).search("python")
    assert "after 2 attempts" in str(ei.value) and len(waits) == 1


def test_non_json_answer_is_a_clear_error(server) -> None:
    server.routes["/search"] = lambda h: server.send(h, 200, b"<html><body>SearXNG</body></html>", "text/html")
    with pytest.raises(SearchError, match="did not answer JSON"):
        SearxngBackend(server.base).search("python")


def test_cached_backend_serves_repeats_from_disk(searx, tmp_path) -> None:
    cached = CachedBackend(SearxngBackend(searx.base), DiskCache(tmp_path, ttl_s=600))
    a = cached.search("python", max_results=2)
    b = cached.search("  python ", max_results=2)  # same question, other spacing
    assert a == b and len(searx.seen) == 1 and (cached.hits, cached.misses) == (1, 1)


def test_spec_and_bad_options() -> None:
    b = search_backend_from_spec("searxng:http://127.0.0.1:8888", categories="science")
    assert isinstance(b, SearxngBackend) and b.base_url == "http://127.0.0.1:8888" and b.categories == "science"
    with pytest.raises(ConfigError, match="http"):
        SearxngBackend("localhost:8888")
    with pytest.raises(ConfigError, match="bad options"):
        search_backend_from_spec("searxng:http://127.0.0.1:8888", colour="blue")
