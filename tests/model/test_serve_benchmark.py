"""benchmarks/serve.py runs on the CPU with the tiny preset (its batched == sequential check passes and it prints
its table); the figures themselves are not asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serve_benchmark_smoke_run_on_cpu(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve.py"), "--preset", "tiny", "--device", "cpu",
                           "--concurrency", "1,3", "--system-tokens", "40", "--tail-tokens", "8", "--new-tokens", "6",
                           "--page-size", "8", "--check", "2", "--baseline-requests", "2", "--ttft-repeats", "1",
                           "--threads", "1", "--json", str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "check: batched == sequential greedy on 2 conversations" in proc.stdout
    assert "| batch-1 sequential" in proc.stdout and "hit / miss" in proc.stdout
    figures = json.loads(out.read_text())
    assert [r["concurrency"] for r in figures["batched"]] == [1, 3] and figures["batched"][1]["reused"] > 0
