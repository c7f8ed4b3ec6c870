"""examples/search_offline.py runs end to end offline, with the scripted reader standing in for a model (a fixed
procedure: search, read the top hit, quote it, cite it); real models are run by hand with --model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "examples.search_offline", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_example_answers_from_the_corpus_and_cites_it() -> None:
    proc = run_example("--model", "scripted", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed" and out["model"] == "scripted-reader"
    assert [c["name"] for c in out["tool_calls"]] == ["web_search", "fetch_url", "final_answer"]
    assert all(c["ok"] for c in out["tool_calls"])
    assert out["cited_urls"] == ["https://space-notes.example/missions/voyager"]
    assert "August 25, 2012" in out["final_answer"] and "121 astronomical units" in out["final_answer"]


def test_example_on_another_corpus_and_question(tmp_path: Path) -> None:
    (tmp_path / "tea.html").write_text(
        "<html><head><title>Tea</title><link rel='canonical' href='https://tea.example/green'></head><body>"
        "<article><p>Green tea is not oxidised. It is steamed in Japan and pan-fired in China.</p></article></body></html>",
        encoding="utf-8",
    )
    proc = run_example("--model", "scripted", "--corpus", str(tmp_path), "--question", "How is green tea processed?")
    assert proc.returncode == 0, proc.stderr
    assert "cited corpus URLs: https://tea.example/green" in proc.stdout and "steamed in Japan" in proc.stdout


def test_unknown_model_spec_is_explained() -> None:
    proc = run_example("--model", "no-such-model")
    assert proc.returncode != 0
    assert "no-such-model" in proc.stderr
