"""A process that cancels a local model's generation and exits ends normally: the generation worker is stopped and
waited for at exit (a thread left inside a torch op aborted the interpreter: "terminate called without an active
exception", exit 134). The real demo model (fetched once into .cache/models by the set-up), in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio
from keye_agent.backends import load_model
from keye_agent.types import GenerationSettings, Message

backend = load_model("demo")

async def main():
    # a long prompt: the cancel lands in its prefill, which no token boundary interrupts
    task = asyncio.ensure_future(backend.agenerate([Message.user("Tell me about the sea. " * 300)], None,
                                                   GenerationSettings(max_tokens=200)))
    await asyncio.sleep(0.3)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print("cancelled", flush=True)

asyncio.run(main())
"""


def test_exit_after_a_cancelled_generation_is_clean(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "cancelled"
    assert "terminate called" not in proc.stderr
