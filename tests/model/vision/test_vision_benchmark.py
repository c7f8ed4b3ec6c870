"""benchmarks/vision.py runs on the CPU with the tiny-vl preset (its checks pass and it prints its table); the
figures themselves belong to the GPU and are not asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_vision_benchmark_smoke_run_on_cpu(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vision.py"), "--preset", "tiny-vl", "--device",
                           "cpu", "--dtype", "float32", "--frames", "2,3", "--tokens-per-frame", "64", "--repeats", "1",
                           "--json", str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "check: tower chunked vs per frame" in proc.stdout and "check: DSA vs dense prefill" in proc.stdout
    assert "dense/DSA" in proc.stdout and out.is_file()
