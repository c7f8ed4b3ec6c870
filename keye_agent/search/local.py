"""The offline search backend: BM25 (bm25s) over the passages of a local document folder.

For air-gapped machines and deterministic tests. The folder is read on first use and re-read whenever a file is
added, removed or modified. Passages are scored; a document ranks by its best passage, whose most relevant
sentences become the snippet. ``time_range`` keeps documents modified within the range.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from keye_agent.errors import ConfigError, SearchError

from .corpus import Corpus, Document, FileStamp, corpus_files, load_corpus, passages
from .results import SearchResult, canonical_url, check_time_range

_MD_HEADING = re.compile(r"^#{1,6}\s+", re.MULTILINE)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_RANGE_S = {"day": 86400, "week": 7 * 86400, "month": 31 * 86400, "year": 366 * 86400}
_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his how i if in into is it its of on or our she so "
    "than that the their them then there these they this to was we were what when where which who why will with "
    "would you your do does did can could not no yes".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-cased words without stop words, with a light plural strip (``models`` and ``model`` match); CJK runs
    become character unigrams and bigrams, since they have no spaces between words."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if _CJK.search(word):
            chars = [c for c in word if _CJK.match(c)]
            out.extend(chars)
            out.extend(a + b for a, b in zip(chars, chars[1:], strict=False))
            rest = _CJK.sub(" ", word).split()
            out.extend(tokenize(" ".join(rest)) if rest else [])
            continue
        if word in _STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def best_snippet(text: str, query_terms: set[str], max_chars: int = 320) -> str:
    """The run of sentences around the one sharing most terms with the query, about ``max_chars`` long."""
    flat = " ".join(_MD_HEADING.sub("", text).split())
    sentences = re.split(r"(?<=[.!?。！？])\s+", flat)
    if not sentences:
        return flat[:max_chars]
    scores = [len(query_terms & set(tokenize(s))) for s in sentences]
    i = max(range(len(sentences)), key=lambda k: scores[k])
    snippet = sentences[i]
    j = i + 1
    while j < len(sentences) and len(snippet) + 1 + len(sentences[j]) <= max_chars:
        snippet += " " + sentences[j]
        j += 1
    if len(snippet) > max_chars:
        snippet = snippet[: max_chars - 1].rsplit(" ", 1)[0] + "…"
    return snippet


@dataclass
class _Index:
    corpus: Corpus
    fingerprint: tuple[FileStamp, ...]
    retriever: object | None
    owners: list[int]  # passage -> document
    passages: list[str]
    vocab: set[str]


class LocalBackend:
    """Search a folder of .txt/.md/.html/.pdf files offline.

    The folder is scanned for changes at most once every ``recheck_s`` seconds (0: before every search), so a burst
    of searches does not stat every file each time.

    Example::

        backend = LocalBackend("docs/")
        backend.search("sparse attention", max_results=3)
    """

    name = "local"

    def __init__(
        self, path: str | os.PathLike[str], *, passage_chars: int = 1000, max_file_bytes: int = 20 * 2**20,
        snippet_chars: int = 320, recheck_s: float = 2.0,
    ) -> None:
        self.root = Path(path).expanduser()
        if not self.root.is_dir():
            raise ConfigError(
                f"the offline corpus folder {str(self.root)!r} does not exist or is not a folder",
                hint="pass a folder of .txt, .md, .html or .pdf files (--search local:PATH)",
            )
        self.passage_chars = passage_chars
        self.max_file_bytes = max_file_bytes
        self.snippet_chars = snippet_chars
        self.cache_key = f"local:{self.root.resolve()}"
        self.recheck_s = recheck_s
        self._index: _Index | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    @property
    def corpus(self) -> Corpus:
        return self._current().corpus

    def _current(self) -> _Index:
        with self._lock:
            now = time.monotonic()
            if self._index is not None and now - self._checked < self.recheck_s:
                return self._index
            files, _ = corpus_files(self.root, self.max_file_bytes)
            fp = tuple(files)
            if self._index is None or self._index.fingerprint != fp:
                self._index = self._build(fp)
            self._checked = time.monotonic()
            return self._index

    def _build(self, fp: tuple[FileStamp, ...]) -> _Index:
        import bm25s

        corpus = load_corpus(self.root, max_file_bytes=self.max_file_bytes)
        owners: list[int] = []
        texts: list[str] = []
        for d, doc in enumerate(corpus.documents):
            for passage in passages(doc.text, self.passage_chars):
                owners.append(d)
                texts.append(passage)
        tokens = [tokenize(corpus.documents[o].title) + tokenize(t) for o, t in zip(owners, texts, strict=True)]
        retriever = None
        vocab: set[str] = set()
        if texts:
            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            vocab = {t for toks in tokens for t in toks}
        return _Index(corpus, fp, retriever, owners, texts, vocab)

    def get(self, url: str) -> Document | None:
        """The corpus document cited as ``url`` (its declared URL, or its file URI), or None."""
        key = canonical_url(url)
        for doc in self._current().corpus.documents:
            if canonical_url(doc.url) == key or doc.path.resolve().as_uri() == url:
                return doc
        return None

    def search(
        self, query: str, *, max_results: int = 10, region: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        """Best documents for ``query``; ``region`` is ignored (a local corpus has none)."""
        index = self._current()
        if index.retriever is None:
            skipped = "; ".join(f"{p}: {why}" for p, why in index.corpus.skipped[:5])
            raise SearchError(
                f"the offline corpus {str(self.root)!r} holds no readable documents" + (f" ({skipped})" if skipped else ""),
                hint="add .txt, .md, .html or .pdf files to it",
            )
        tr = check_time_range(time_range)
        terms = [t for t in tokenize(query) if t in index.vocab]
        if not terms:
            return []
        oldest = time.time() - _RANGE_S[tr] if tr else None
        # several passages of one document can outrank the next document: look well past max_results
        k = min(len(index.passages), max(50, 10 * max_results))
        ids, scores = index.retriever.retrieve([terms], k=k, show_progress=False)  # type: ignore[attr-defined]
        results: list[SearchResult] = []
        seen: set[int] = set()
        term_set = set(terms)
        for pid, score in zip(ids[0].tolist(), scores[0].tolist(), strict=True):
            if score <= 0:
                break
            d = index.owners[pid]
            if d in seen:
                continue
            doc = index.corpus.documents[d]
            if oldest is not None and doc.mtime < oldest:
                continue
            seen.add(d)
            results.append(SearchResult(
                title=doc.title, url=doc.url, snippet=best_snippet(index.passages[pid], term_set, self.snippet_chars),
                source="local", rank=len(results) + 1,
            ))
            if len(results) >= max_results:
                break
        return results
