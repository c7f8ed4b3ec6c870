"""The offline search backend (bm25s over passages) against SQLite FTS5 on the same files.

A synthetic corpus is written to a temp folder: documents of Zipf-distributed pseudo-words, some of them carrying a
planted "needle" (three rare words); each needle query is those three words plus two common ones. Correctness first:
both engines must put the needle document first for every needle query (recall@1), else no timing is reported.
Then: cold start (read and extract every file, build the index: what the first search pays) and per-query latency
over the needle queries (p50, p95), snippets included on both sides (FTS5's ``snippet()``). Ours re-scans the
folder for changed files at most every 2 s by default; a second row shows the cost of re-scanning before every
query; the baseline never looks for changes.

    python benchmarks/search_local.py --docs 3000 --needles 100
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from keye_agent.search import LocalBackend
from keye_agent.search.corpus import load_corpus, passages


def pseudo_words(n: int, rng: random.Random) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "za", "po", "qe", "di", "fu", "ga", "hy", "ja"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def write_corpus(root: Path, n_docs: int, n_needles: int, seed: int) -> list[tuple[str, str]]:
    """Writes the files; returns [(query, expected file name)]."""
    rng = random.Random(seed)
    vocab = pseudo_words(6000, rng)
    weights = [1 / (i + 1) for i in range(len(vocab))]  # Zipf: a few words everywhere, most words rare
    common = vocab[:50]
    needle_docs = set(rng.sample(range(n_docs), n_needles))
    queries = []
    for d in range(n_docs):
        words = rng.choices(vocab, weights, k=rng.randint(120, 400))
        name = f"doc{d:05d}.txt"
        if d in needle_docs:
            planted = [f"needle{d}x{j}" for j in range(3)]
            for w in planted:
                words.insert(rng.randrange(len(words)), w)
            queries.append((" ".join(planted + rng.sample(common, 2)), name))
        text = ". ".join(" ".join(words[i:i + 12]) for i in range(0, len(words), 12)) + "."
        (root / name).write_text(f"Document {d}\n\n{text}\n", encoding="utf-8")
    return queries


class Fts5:
    """The baseline: one FTS5 table of the same passages, ranked by SQLite's built-in bm25()."""

    def __init__(self, root: Path, passage_chars: int = 1000) -> None:
        corpus = load_corpus(root)
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE p USING fts5(title, body, url UNINDEXED)")
        rows = [(doc.title, passage, doc.url) for doc in corpus.documents for passage in passages(doc.text, passage_chars)]
        self.db.executemany("INSERT INTO p (title, body, url) VALUES (?, ?, ?)", rows)
        self.db.commit()

    def search(self, query: str, k: int = 5) -> list[tuple[str, str]]:
        match = " OR ".join(f'"{w}"' for w in query.split())
        rows = self.db.execute(
            "SELECT url, snippet(p, 1, '', '', '…', 40) FROM p WHERE p MATCH ? ORDER BY rank LIMIT ?", (match, 4 * k)
        ).fetchall()
        seen: dict[str, str] = {}
        for url, snip in rows:
            seen.setdefault(url, snip)
        return list(seen.items())[:k]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--needles", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="keye-bench-search-") as tmp:
        root = Path(tmp)
        queries = write_corpus(root, args.docs, args.needles, args.seed)
        size_mb = sum(p.stat().st_size for p in root.iterdir()) / 1e6

        t0 = time.perf_counter()
        ours = LocalBackend(root)
        ours.search("warm")  # reads, extracts and indexes every file
        ours_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        base = Fts5(root)
        base_cold = time.perf_counter() - t0

        ours_hits = sum(ours.search(q, max_results=5)[0].url.endswith(name) for q, name in queries)
        base_hits = sum(bool(r) and r[0][0].endswith(name) for q, name in queries for r in [base.search(q)])
        if ours_hits != len(queries) or base_hits != len(queries):
            raise SystemExit(f"recall@1 below 1: ours {ours_hits}/{len(queries)}, fts5 {base_hits}/{len(queries)}; "
                             "no timings reported")

        rescan = LocalBackend(root, recheck_s=0)
        rescan.search("warm")
        ours_t, rescan_t, base_t = [], [], []
        for _ in range(3):
            for q, _name in queries:
                for engine, times in ((ours, ours_t), (rescan, rescan_t), (base, base_t)):
                    t0 = time.perf_counter()
                    engine.search(q)
                    times.append(time.perf_counter() - t0)
        n_passages = len(ours._current().passages)

    print(f"corpus: {args.docs} files, {size_mb:.1f} MB, {n_passages} passages; {len(queries)} needle queries x 3")
    print("| engine | recall@1 | cold start (read + index) | query p50 | query p95 |")
    print("|---|---|---|---|---|")
    print(f"| ours: bm25s | {ours_hits}/{len(queries)} | {ours_cold:.2f} s | {1e3 * statistics.median(ours_t):.2f} ms "
          f"| {1e3 * pct(ours_t, 0.95):.2f} ms |")
    print(f"| ours, folder re-scanned before every query (recheck_s=0) | | | "
          f"{1e3 * statistics.median(rescan_t):.2f} ms | {1e3 * pct(rescan_t, 0.95):.2f} ms |")
    print(f"| baseline: SQLite FTS5 | {base_hits}/{len(queries)} | {base_cold:.2f} s | "
          f"{1e3 * statistics.median(base_t):.2f} ms | {1e3 * pct(base_t, 0.95):.2f} ms |")
    print(f"| ratio ours/baseline | | {ours_cold / base_cold:.2f}x | "
          f"{statistics.median(ours_t) / statistics.median(base_t):.2f}x | {pct(ours_t, 0.95) / pct(base_t, 0.95):.2f}x |")


if __name__ == "__main__":
    main()
