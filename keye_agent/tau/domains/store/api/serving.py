"""Run an ASGI app with uvicorn in a background thread on a free loopback port (tests, in-process simulations)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from keye_agent.errors import KeyeAgentError


@contextmanager
def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 10.0,
                    **uvicorn_kwargs: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL (``http://127.0.0.1:PORT``).

    The socket is bound before uvicorn starts, so port 0 gives a free port with no race between choosing it and
    binding it.
    """
    import uvicorn  # serving is optional: only this helper and `python -m examples.store_api` need uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    uvicorn_kwargs.setdefault("log_level", "warning")
    # a request still sleeping in an injected fault must not hold up shutdown for long
    uvicorn_kwargs.setdefault("timeout_graceful_shutdown", 2)
    config = uvicorn.Config(app, lifespan="off", **uvicorn_kwargs)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="keye-asgi")
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise KeyeAgentError(f"the ASGI server on {host}:{bound_port} did not start within {startup_timeout_s:g} s")
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
