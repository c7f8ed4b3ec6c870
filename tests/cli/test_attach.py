"""Attachments from the command line: ``keye-agent run --image/--video`` on the tiny-vl preset (real model and
vision tower, random weights) sends them through the vision tower; the REPL's ``/attach`` puts a file on the next
message (pexpect on a real pseudo-terminal, scripted replay model). Media files are written by the test."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pexpect
import pytest

from keye_agent.cli.attach import attachment
from keye_agent.errors import ConfigError
from keye_agent.types import ImagePart, Trajectory, VideoPart

ROOT = Path(__file__).resolve().parents[2]


def _png(path: Path) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (56, 84, 3), dtype=np.uint8)).save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return path


def _video(path: Path) -> Path:
    import av

    with av.open(str(path), mode="w") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 20 * i, dtype=np.uint8), format="rgb24")
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def test_run_with_image_and_video_reaches_the_vision_tower(tmp_path: Path) -> None:
    img, vid = _png(tmp_path / "a.png"), _video(tmp_path / "v.mp4")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KEYE_AGENT_HOME": str(tmp_path / "home")}
    base = [sys.executable, "-m", "keye_agent.cli.main", "run", "What is shown?", "--model", "keye:tiny-vl",
            "--random-weights", "--max-tokens", "4", "--max-steps", "1", "--json"]
    plain = subprocess.run(base, env=env, capture_output=True, text=True, timeout=300)
    seen = subprocess.run(base + ["--image", str(img), "--video", str(vid)], env=env, capture_output=True,
                          text=True, timeout=300)
    a, b = json.loads(plain.stdout), json.loads(seen.stdout)
    # 6 image tokens and 2 frames of video pads (plus their timestamps) more than the text alone
    assert b["usage"]["prompt_tokens"] >= a["usage"]["prompt_tokens"] + 6 + 2 * 4, (plain.stderr, seen.stderr)


def test_run_refuses_a_missing_attachment(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "keye_agent.cli.main", "run", "x", "--model", "keye:tiny-vl",
                        "--random-weights", "--image", str(tmp_path / "nope.png")],
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "cannot attach" in r.stdout + r.stderr and "no such file" in r.stdout + r.stderr


def test_attachment_kinds(tmp_path: Path) -> None:
    assert isinstance(attachment(_png(tmp_path / "a.png")), ImagePart)
    assert isinstance(attachment(_video(tmp_path / "b.mp4")), VideoPart)
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(ConfigError, match="neither an image nor a video"):
        attachment(tmp_path / "c.txt")
    # asked for as a kind (--video, --image): a file of another type is refused here, not when it is decoded
    (tmp_path / "run.jsonl").write_text("{}")
    with pytest.raises(ConfigError, match="as a video: .jsonl is not a video file type"):
        attachment(tmp_path / "run.jsonl", "video")
    with pytest.raises(ConfigError, match="as an image: .mp4 is not an image file type"):
        attachment(tmp_path / "b.mp4", "image")
    assert isinstance(attachment(tmp_path / "b.mp4", "video"), VideoPart)


def test_repl_attach_puts_the_file_on_the_next_message(tmp_path: Path) -> None:
    img = _png(tmp_path / "plot.png")
    script = tmp_path / "turns.jsonl"
    script.write_text(json.dumps("It is a plot.") + "\n" + json.dumps("Second answer.") + "\n")
    env = {**os.environ, "KEYE_AGENT_HOME": str(tmp_path / "home"), "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm",
           "COLUMNS": "120", "LINES": "40", "PYTHONPATH": str(ROOT)}
    child = pexpect.spawn(sys.executable, ["-m", "keye_agent.cli.main", "chat", "--model", f"scripted:{script}"],
                          env=env, cwd=str(tmp_path), encoding="utf-8", timeout=60, dimensions=(40, 120))
    try:
        child.expect("you>")
        child.send(f"/attach {img}\r")
        child.expect("attached image")
        child.expect("you>")
        child.send("What is this?\r")
        child.expect("It is a plot.")
        child.expect("you>")
        child.send("And now?\r")
        child.expect("Second answer.")
        child.expect("you>")
        child.send(f"/save {tmp_path / 's.jsonl'}\r")
        child.expect("saved")
        child.expect("you>")
        child.send("/exit\r")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)
    users = [m for m in Trajectory.load(tmp_path / "s.jsonl").messages if m.role == "user"]
    assert isinstance(users[0].content, list) and users[0].content[0] == ImagePart(url=str(img.resolve()))
    assert users[1].content == "And now?"  # the attachment went with one message only
