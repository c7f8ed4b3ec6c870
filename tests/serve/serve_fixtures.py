"""Helpers of the server tests: the real app on a real uvicorn server on a free loopback port (in a thread, for
the tests that share one loaded model; as the `keye-agent serve` command in a subprocess logging to a file, for the
command's own tests), and the tools the tiny model is offered.

The tiny preset has random weights: its text is noise, but constrained decoding makes its tool calls valid by
construction, so the calls are what the client-side assertions check. No part of the server is faked.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from keye_agent.serve import ServeConfig, create_app
from keye_agent.tau.domains.store.api.serving import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny"
"""The name the test servers serve their model under."""

# enums keep a random-weight model's strings short: a free string runs on until max_tokens
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The local time of a city.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["CET", "UTC"]}},
                   "required": ["zone"], "additionalProperties": False}}}


@contextmanager
def serving(backend: Any, **config: Any) -> Iterator[str]:
    """The app over ``backend`` on uvicorn in a thread; yields the API root (``http://127.0.0.1:PORT/v1``)."""
    app = create_app(backend, ServeConfig(model_name=config.pop("model_name", MODEL), **config))
    with serve_in_thread(app) as url:
        yield url + "/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keye_agent_exe() -> str:
    return str(Path(sys.executable).with_name("keye-agent"))


@contextmanager
def serve_command(args: list[str], log: Path, env: dict[str, str] | None = None,
                  startup_s: float = 240) -> Iterator[str]:
    """`keye-agent serve ARGS --port P` in a subprocess (its output in ``log``) until /health answers; yields the
    API root; stopped and waited for at the end."""
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("w") as out:
        proc = subprocess.Popen([keye_agent_exe(), "serve", *args, "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup_s
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"keye-agent serve exited with {proc.returncode}: {log.read_text()[-3000:]}")
                try:
                    if httpx.get(base + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"keye-agent serve did not answer in {startup_s:g} s: {log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield base + "/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_idle(api: str, timeout_s: float = 120) -> dict[str, Any]:
    """/health once no request is in flight (a cancelled generation has let go of the model)."""
    deadline = time.monotonic() + timeout_s
    while True:
        health = httpx.get(api.removesuffix("/v1") + "/health", timeout=5).json()
        if health["active"] == 0 or time.monotonic() > deadline:
            return health
        time.sleep(0.2)
