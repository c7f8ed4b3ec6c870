"""Tool construction and configuration (entry points, YAML registry, backend specs), URL canonicalisation, the disk
cache, and fetch_url's offline corpus mode."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from keye_agent.errors import ConfigError, ToolExecutionError
from keye_agent.search import (
    DdgsBackend,
    DiskCache,
    LocalBackend,
    SearchResult,
    canonical_url,
    dedupe,
    make_fetch_url,
    make_web_search,
    search_backend_from_spec,
)
from keye_agent.tools import available_builtins, load_builtin
from keye_agent.tools.yaml_registry import load_registry
from keye_agent.types import ToolCall


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "tea.md").write_text("---\nurl: https://tea.example/oolong\n---\n# Oolong tea\n\nOolong is partly "
                                 "oxidised tea from Fujian and Taiwan.\n", encoding="utf-8")
    return root


def test_builtins_are_registered_as_entry_points() -> None:
    assert {"web_search", "fetch_url"} <= set(available_builtins())


def test_yaml_registry_builds_both_tools(docs: Path, tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(
        "version: 1\ntools:\n"
        f"  - {{kind: builtin, builtin: web_search, options: {{backend: 'local:{docs}', max_results: 3}}}}\n"
        f"  - {{kind: builtin, builtin: fetch_url, options: {{corpus: '{docs}', offline: true, max_chars: 4000}}}}\n",
        encoding="utf-8",
    )
    registry = load_registry(path)
    assert registry.names == ["web_search", "fetch_url"]
    schema = {s["function"]["name"]: s["function"]["parameters"] for s in registry.schemas()}
    assert schema["web_search"]["properties"]["max_results"]["default"] == 3
    assert schema["fetch_url"]["properties"]["max_chars"]["default"] == 4000
    search, page = registry.dispatch_sync([
        ToolCall(id="1", name="web_search", arguments={"query": "oolong oxidised"}),
        ToolCall(id="2", name="fetch_url", arguments={"url": "https://tea.example/oolong"}),
    ])
    assert search.ok and "URL: https://tea.example/oolong" in search.content
    assert page.ok and "Fujian and Taiwan" in page.content and "offline corpus" in page.content


def test_yaml_bad_backend_is_a_located_config_error(tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text("version: 1\ntools:\n  - {kind: builtin, builtin: web_search, options: {backend: 'bing'}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown search backend 'bing'") as ei:
        load_registry(path)
    assert ei.value.file and ei.value.line == 3


def test_backend_specs(docs: Path) -> None:
    assert isinstance(search_backend_from_spec("ddgs"), DdgsBackend)
    assert search_backend_from_spec("ddgs:mojeek,brave").engine_names == ["mojeek", "brave"]
    local = search_backend_from_spec(f"local:{docs}")
    assert isinstance(local, LocalBackend) and search_backend_from_spec(local) is local
    assert isinstance(search_backend_from_spec("local", path=str(docs)), LocalBackend)
    with pytest.raises(ConfigError, match="needs a folder"):
        search_backend_from_spec("local")
    with pytest.raises(ConfigError, match="needs the instance URL"):
        search_backend_from_spec("searxng")
    with pytest.raises(ConfigError, match="cannot apply"):
        search_backend_from_spec(local, engines="x")
    with pytest.raises(ConfigError, match="bad options"):
        make_web_search(backend="ddgs", colour="blue")
    with pytest.raises(ConfigError, match="max_results"):
        make_web_search(backend=f"local:{docs}", max_results=50)


def test_fetch_url_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown network option"):
        load_builtin("fetch_url", network={"allow_everything": True})
    with pytest.raises(ConfigError, match="needs a corpus"):
        make_fetch_url(offline=True)
    tool = make_fetch_url(network={"allow_private": True}, allowed_hosts=["intranet.example"], max_redirects=2)
    policy = tool.metadata["policy"]
    assert policy.allow_private and not policy.allow_loopback and policy.max_redirects == 2
    assert policy.allowed_hosts == frozenset({"intranet.example"})


def test_offline_fetch_refuses_urls_outside_the_corpus(docs: Path) -> None:
    tool = make_fetch_url(corpus=docs, offline=True)
    text = asyncio.run(tool.fn(url=(docs / "tea.md").resolve().as_uri()))  # the file URI of a corpus document
    assert "Oolong is partly oxidised" in text and text.startswith("URL: https://tea.example/oolong")
    with pytest.raises(ToolExecutionError, match="not in the offline corpus"):
        asyncio.run(tool.fn(url="https://example.com/"))


def test_canonical_url() -> None:
    same = [
        "https://www.Example.com/a/b/?utm_source=x&b=2&a=1#frag",
        "http://example.com:80/a/b?a=1&b=2&fbclid=123",
        "https://example.com:443/a/b?b=2&a=1",
    ]
    assert len({canonical_url(u) for u in same}) == 1
    assert canonical_url("https://example.com/a?b=2") != canonical_url("https://example.com/a?b=3")
    assert canonical_url("https://example.com:8443/") != canonical_url("https://example.com/")
    assert canonical_url("https://example.com") == canonical_url("https://example.com/")


def test_dedupe_keeps_the_first_and_renumbers() -> None:
    rs = [SearchResult("A", "https://a.example/x", "", "s", 7), SearchResult("", "", "", "s"),
          SearchResult("A2", "http://www.a.example/x/", "", "s", 1), SearchResult("B", "https://b.example/", "", "s")]
    out = dedupe(rs)
    assert [(r.title, r.rank) for r in out] == [("A", 1), ("B", 2)]
    assert dedupe(rs, max_results=1) == out[:1]


def test_disk_cache_ttl_and_damage(tmp_path: Path, monkeypatch) -> None:
    cache = DiskCache(tmp_path, ttl_s=10)
    cache.set("q", [{"x": 1}])
    assert cache.get("q") == [{"x": 1}] and cache.get("other") is None
    [path] = list(tmp_path.glob("*/*.json"))
    path.write_text("{not json", encoding="utf-8")
    assert cache.get("q") is None and not path.exists()  # a damaged entry is a miss, and is removed
    cache.set("q", 1)
    cache.set("r", 2)
    import keye_agent.search.cache as cache_mod

    real = cache_mod.time.time
    monkeypatch.setattr(cache_mod.time, "time", lambda: real() + 11)
    assert cache.prune() == 2 and cache.get("r") is None
    assert not list(tmp_path.glob("*/*.json"))
    assert not list(tmp_path.glob("*/.tmp-*"))  # no temp files left behind
    with pytest.raises(ConfigError, match="ttl_s"):
        DiskCache(tmp_path, ttl_s=0)


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path: Path) -> None:
    from keye_agent.search import default_cache_dir

    monkeypatch.setenv("KEYE_AGENT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("KEYE_AGENT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "keye-agent"


def test_results_round_trip_through_json() -> None:
    r = SearchResult("T", "https://t.example/", "snip", "local", 3)
    assert SearchResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_search_tools_for_a_local_spec_work_together(docs: Path) -> None:
    from keye_agent.search import search_tools
    from keye_agent.tools import ToolRegistry

    web_search, fetch_url = search_tools(f"local:{docs}", search_options={"max_results": 2})
    assert fetch_url.metadata["policy"].allow_loopback is False
    registry = ToolRegistry([web_search, fetch_url])
    found, page, outside = registry.dispatch_sync([
        ToolCall(id="1", name="web_search", arguments={"query": "oolong"}),
        ToolCall(id="2", name="fetch_url", arguments={"url": "https://tea.example/oolong"}),
        ToolCall(id="3", name="fetch_url", arguments={"url": "https://example.com/"}),
    ])
    assert found.ok and page.ok and "Fujian" in page.content
    assert not outside.ok and "not in the offline corpus" in outside.error
    [_, online_fetch] = search_tools(f"local:{docs}", fetch_options={"offline": False})
    assert online_fetch.metadata["policy"].allow_private is False
