"""The offline backend on a real corpus written by the test: markdown with front matter, HTML with a canonical link,
plain text, a real PDF, Chinese text, and files that must be skipped (hidden, unsupported, corrupt)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from keye_agent.errors import ConfigError, SearchError
from keye_agent.search import LocalBackend
from keye_agent.search.corpus import passages
from keye_agent.search.local import tokenize
from keye_agent.tools import ToolRegistry, load_builtin
from keye_agent.types import ToolCall


@pytest.fixture
def corpus(tmp_path: Path, pdf_bytes) -> Path:
    root = tmp_path / "corpus"
    (root / "papers").mkdir(parents=True)
    (root / "papers" / "dsa.md").write_text(
        "---\ntitle: DeepSeek Sparse Attention\nurl: https://example.org/papers/dsa\n---\n"
        "# DeepSeek Sparse Attention\n\nA lightning indexer scores every previous token and each query attends only "
        "to its top-k keys. This cuts the cost of attention over long contexts.\n\nThe indexer runs in FP8.\n",
        encoding="utf-8",
    )
    (root / "volcano.html").write_text(
        "<html><head><title>Volcanoes of Iceland</title>"
        '<link rel="canonical" href="https://geo.example/iceland/volcanoes"></head><body>'
        "<nav>Home | Maps | Contact</nav><article><h1>Volcanoes of Iceland</h1>"
        "<p>Iceland has about 130 volcanic mountains. Hekla erupted in 2000 and Eyjafjallajokull in 2010, "
        "halting air traffic across Europe for days.</p><p>Lava fields cover a tenth of the island.</p></article>"
        "<footer>Copyright geo.example</footer></body></html>",
        encoding="utf-8",
    )
    (root / "bread.txt").write_text(
        "Sourdough bread rises with wild yeast and lactic acid bacteria. A starter is fed flour and water daily.\n",
        encoding="utf-8",
    )
    (root / "report.pdf").write_bytes(pdf_bytes(
        ["Quarterly report of the Keye team.", "Throughput of the decoder rose to 1800 tokens per second."],
        title="Keye quarterly report",
    ))
    (root / "chinese.md").write_text("# 快手模型\n\n可灵是快手的视频生成模型。稀疏注意力降低了长上下文的计算量。\n", encoding="utf-8")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.md").write_text("volcano secret volcano", encoding="utf-8")
    (root / "notes.docx").write_bytes(b"PK\x03\x04 not supported")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    return root


def test_finds_each_kind_of_document_with_its_url(corpus: Path) -> None:
    backend = LocalBackend(corpus)
    top = backend.search("lightning indexer top-k keys", max_results=3)
    assert top[0].url == "https://example.org/papers/dsa"
    assert top[0].title == "DeepSeek Sparse Attention"
    assert "indexer" in top[0].snippet and top[0].source == "local" and top[0].rank == 1

    html = backend.search("Iceland volcano eruption air traffic")[0]
    assert html.url == "https://geo.example/iceland/volcanoes" and html.title == "Volcanoes of Iceland"
    assert "Eyjafjallajokull" in html.snippet

    txt = backend.search("sourdough starter yeast")[0]
    assert txt.url == (corpus / "bread.txt").resolve().as_uri()

    pdf = backend.search("decoder throughput tokens per second")[0]
    assert pdf.url.endswith("report.pdf") and pdf.title == "Keye quarterly report"
    assert "1800" in pdf.snippet

    zh = backend.search("稀疏注意力")[0]
    assert zh.url.endswith("chinese.md") and zh.title == "快手模型"


def test_ranks_are_consecutive_and_documents_unique(corpus: Path) -> None:
    results = LocalBackend(corpus).search("attention iceland bread keye", max_results=10)
    assert [r.rank for r in results] == list(range(1, len(results) + 1))
    assert len({r.url for r in results}) == len(results)
    assert len(results) >= 3
    assert LocalBackend(corpus).search("attention iceland bread keye", max_results=2) == results[:2]


def test_skips_hidden_unsupported_and_broken_files_and_says_why(corpus: Path) -> None:
    backend = LocalBackend(corpus)
    assert backend.search("secret") == []  # only in the hidden folder
    docs = {d.path.name for d in backend.corpus.documents}
    assert docs == {"dsa.md", "volcano.html", "bread.txt", "report.pdf", "chinese.md"}
    skipped = dict(backend.corpus.skipped)
    assert any(p.endswith("broken.pdf") for p in skipped)
    assert "PDF cannot be read" in next(why for p, why in skipped.items() if p.endswith("broken.pdf"))


def test_unknown_words_give_no_results_not_an_error(corpus: Path) -> None:
    assert LocalBackend(corpus).search("zyxwvut qqqq") == []


def test_reindexes_when_a_file_is_added_or_changed(corpus: Path) -> None:
    backend = LocalBackend(corpus, recheck_s=0)
    assert backend.search("glacier") == []
    (corpus / "glacier.md").write_text("# Glaciers\n\nVatnajokull is the largest glacier in Iceland.\n")
    assert backend.search("glacier")[0].url.endswith("glacier.md")
    (corpus / "glacier.md").write_text("# Deserts\n\nThe Sahara is hot and dry, with dunes of sand.\n")
    os.utime(corpus / "glacier.md", ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on coarse clocks
    assert backend.search("glacier") == []
    assert backend.search("sahara dunes")[0].title == "Deserts"
    (corpus / "glacier.md").unlink()
    assert backend.search("sahara dunes") == []


def test_rescans_at_most_every_recheck_s(corpus: Path) -> None:
    backend = LocalBackend(corpus, recheck_s=3600)
    assert backend.search("glacier") == []
    (corpus / "glacier.md").write_text("# Glaciers\n\nVatnajokull is the largest glacier in Iceland.\n")
    assert backend.search("glacier") == []  # not looked at again yet
    backend.recheck_s = 0
    assert backend.search("glacier")[0].url.endswith("glacier.md")


def test_time_range_keeps_recently_modified_documents(corpus: Path) -> None:
    old = time.time() - 40 * 86400
    os.utime(corpus / "bread.txt", (old, old))
    backend = LocalBackend(corpus)
    assert backend.search("sourdough", time_range="year")[0].url.endswith("bread.txt")
    assert backend.search("sourdough", time_range="month") == []
    with pytest.raises(SearchError, match="time_range must be one of"):
        backend.search("sourdough", time_range="decade")


def test_get_finds_a_document_by_its_cited_url(corpus: Path) -> None:
    backend = LocalBackend(corpus)
    doc = backend.get("https://www.example.org/papers/dsa/#intro")  # canonical form: www, slash, fragment
    assert doc is not None and "lightning indexer" in doc.text
    assert backend.get("https://example.org/other") is None


def test_bad_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LocalBackend(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SearchError, match="holds no readable documents"):
        LocalBackend(tmp_path / "empty").search("anything")


def test_passages_split_long_text_on_boundaries() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 60 for i in range(10))
    parts = passages(text, max_chars=500)
    assert all(len(p) <= 500 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


def test_tokenize_strips_plurals_and_splits_cjk() -> None:
    assert tokenize("The models of Cats") == ["model", "cat"]
    assert tokenize("注意力") == ["注", "意", "力", "注意", "意力"]


def test_web_search_builtin_over_the_local_corpus(corpus: Path) -> None:
    tool = load_builtin("web_search", backend=f"local:{corpus}")
    registry = ToolRegistry([tool])
    [ok, bad] = registry.dispatch_sync([
        ToolCall(id="1", name="web_search", arguments={"query": "Hekla eruption", "max_results": 2}),
        ToolCall(id="2", name="web_search", arguments={"query": "x", "time_range": "fortnight"}),
    ])
    assert ok.ok, ok.error
    assert "[1] Volcanoes of Iceland" in ok.content and "URL: https://geo.example/iceland/volcanoes" in ok.content
    assert not bad.ok and bad.error_type == "ToolValidationError" and "time_range" in bad.error
    assert "local document collection" in tool.description
