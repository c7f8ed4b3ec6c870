"""The video example and the README's images-and-videos block run as written (tiny-vl preset: real model and
vision tower, random weights; videos written by the code itself with PyAV)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_video_agent_answers_with_the_tools_timestamps(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "examples.video_timestamps", "--json"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["tool_calls"] == 1
    assert out["change"]["from_s"] < 4.0 <= out["change"]["to_s"]  # the light switches on at 4.0 s
    assert f"between {out['change']['from_s']} s" in out["answer"] and "random weights" in out["answer"]
    assert out["prompt_tokens"] > 12 * 16  # 12 frames of video tokens reached the model on its first step


def test_readme_images_and_videos_block_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [block] = [b for b in blocks if "VideoPart" in b]
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tokens, _, flag = proc.stdout.strip().partition(" prompt tokens, of which video: ")
    assert int(tokens) > 100 and flag == "True"
