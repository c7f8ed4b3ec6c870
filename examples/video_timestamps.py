"""An agent gets a video, samples it with a tool, and answers with the timestamps the tool measured.

    python -m examples.video_timestamps                      # writes a demo video, tiny-vl model (plumbing only)
    python -m examples.video_timestamps --video clip.mp4 --model /models/Keye-VL-2.0

The video goes to the model twice: attached to the task (the vision tower sees its frames at 2 fps, with their
timestamps in the prompt), and through the ``scan_video`` tool, which samples it the same way and returns each
frame's time and brightness, and the moment of the largest change. The default model is the tiny-vl preset with
random weights: it exercises every part of the path (frames, vision tower, 3-D positions, a constrained tool call)
but its words mean nothing; the answer printed is built from what the tool returned, and says so. With a real
checkpoint (--model PATH) the model's own answer is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Literal

from keye_agent.agent import Agent
from keye_agent.tools import ToolRegistry, tool
from keye_agent.types import GenerationSettings, Message, TextPart, VideoPart


def write_demo_video(path: Path, seconds: float = 6.0, fps: int = 10) -> Path:
    """A clip that is dark, then a light switches on at 4.0 s (written with PyAV)."""
    import av
    import numpy as np

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(int(seconds * fps)):
            level = 30 if i / fps < 4.0 else 220
            frame = av.VideoFrame.from_ndarray(np.full((96, 128, 3), level, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_scan_tool(video: Path):
    from keye_agent.model.vision import VideoOptions, read_video

    @tool
    def scan_video(fps: Literal[1, 2] = 2) -> str:
        """Sample the attached video and measure each frame's brightness.

        Args:
            fps: frames per second to sample.
        """
        frames, plan = read_video(video, VideoOptions(fps=float(fps)))
        levels = frames.float().mean(dim=(1, 2, 3)).tolist()
        jumps = [abs(b - a) for a, b in zip(levels, levels[1:], strict=False)]
        k = max(range(len(jumps)), key=jumps.__getitem__) if jumps else 0
        return json.dumps({
            "frames": [{"t": round(t, 1), "brightness": round(v, 1)} for t, v in zip(plan.timestamps, levels,
                                                                                     strict=True)],
            "largest_change": {"from_s": round(plan.timestamps[k], 1),
                               "to_s": round(plan.timestamps[min(k + 1, len(levels) - 1)], 1)},
            "notes": plan.notes,
        })

    return scan_video


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=None, help="a video file (default: write a demo clip)")
    ap.add_argument("--model", default="tiny-vl", help="a Keye checkpoint directory or a preset (random weights)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    from keye_agent.backends.keye import KeyeBackend
    from keye_agent.model.vision import VideoOptions

    video = args.video or write_demo_video(Path("demo_clip.mp4"))
    preset = not Path(args.model).is_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a preset's stand-in tokenizer warns that it is for plumbing only
        backend = KeyeBackend(args.model, random_weights=preset, device="cpu" if preset else None,
                              video_options=VideoOptions(max_total_tokens=16 * 64) if preset else None)
    registry = ToolRegistry([make_scan_tool(video)])
    agent = Agent(backend, registry, instructions="Use scan_video, then answer with the time of the change.",
                  first_tool_choice="required", max_steps=2,
                  settings=GenerationSettings(max_tokens=48, temperature=0.0))
    task = Message.user([VideoPart(url=str(video)), TextPart(text="At what time does the light switch on?")])
    result = agent.run(task)
    scans = [json.loads(r.content) for s in result.trajectory.steps for r in s.tool_results if r.ok]
    change = scans[0]["largest_change"] if scans else None
    if preset:
        answer = (f"(tiny-vl, random weights: built from the tool's output) the light switches on between "
                  f"{change['from_s']} s and {change['to_s']} s" if change else "(the tool did not run)")
    else:
        answer = result.final_answer or ""
    notes = [n for s in result.trajectory.steps for n in s.notes]
    if args.json:
        print(json.dumps({"answer": answer, "change": change, "tool_calls": len(scans), "status": result.status,
                          "prompt_tokens": result.usage.prompt_tokens, "notes": notes}))
    else:
        for n in notes:
            print(f"note: {n}")
        if scans:
            print("frames the tool sampled: " + ", ".join(f"{f['t']}s={f['brightness']}" for f in scans[0]["frames"]))
        print(answer)
    return 0 if scans else 1


if __name__ == "__main__":
    sys.exit(main())
