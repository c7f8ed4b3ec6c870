"""Fault injection for tests: an ASGI middleware, installed only in test mode, driven by an ``X-Fault`` header.

``X-Fault: <kind>[;times=N][;id=KEY][;retry_after=S][;delay=S][;mb=N]``, kinds:

* ``500`` / ``502`` / ``503``: that status with a JSON error body;
* ``429``: rate limited, with ``Retry-After: S`` (default 1);
* ``timeout``: wait ``delay`` seconds (default 5) before answering normally;
* ``reset``: start a response, send part of the body, then drop the connection;
* ``bad_json``: 200 with a truncated JSON body;
* ``huge``: 200 with a JSON body of ``mb`` megabytes (default 10), streamed without a Content-Length.

``times=N`` injects the fault on the first N requests carrying the same header (and ``id``), then lets requests
through: "a 500 then success" is ``X-Fault: 500;times=1;id=t1``. Without ``times`` the fault is permanent.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

__all__ = ["FaultInjector", "parse_fault"]


class FaultSpecError(ValueError):
    pass


def parse_fault(value: str) -> dict[str, Any]:
    kind, *opts = [p.strip() for p in value.split(";") if p.strip()]
    if kind not in ("500", "502", "503", "429", "timeout", "reset", "bad_json", "huge"):
        raise FaultSpecError(f"unknown fault {kind!r}")
    spec: dict[str, Any] = {"kind": kind}
    for opt in opts:
        k, _, v = opt.partition("=")
        if k not in ("times", "id", "retry_after", "delay", "mb"):
            raise FaultSpecError(f"unknown fault option {k!r}")
        spec[k] = v if k == "id" else float(v)
    return spec


class FaultInjector:
    """Wraps an ASGI app; requests with ``X-Fault`` get the fault instead of (or before) the app's answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.injected = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"x-fault")
        if raw is None:
            await self.app(scope, receive, send)
            return
        try:
            spec = parse_fault(raw.decode("latin-1"))
        except (FaultSpecError, ValueError) as e:
            await _json(send, 400, {"error": "bad_fault_spec", "detail": str(e)})
            return
        key = f"{spec.get('id', '')}|{raw!r}|{scope.get('path')}"
        with self._lock:
            n = self._counts.get(key, 0)
            self._counts[key] = n + 1
        if "times" in spec and n >= spec["times"]:
            await self.app(scope, receive, send)
            return
        self.injected += 1
        await self._inject(spec, scope, receive, send)

    async def _inject(self, spec: dict[str, Any], scope: Scope, receive: Any, send: Any) -> None:
        kind = spec["kind"]
        if kind in ("500", "502", "503"):
            await _json(send, int(kind), {"error": "server_error", "detail": f"injected {kind}"})
        elif kind == "429":
            ra = spec.get("retry_after", 1)
            await _json(send, 429, {"error": "rate_limited", "detail": "too many requests"},
                        [(b"retry-after", f"{ra:g}".encode())])
        elif kind == "timeout":
            await asyncio.sleep(spec.get("delay", 5.0))
            await self.app(scope, receive, send)
        elif kind == "reset":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100000")]})
            await send({"type": "http.response.body", "body": b'{"partial": "', "more_body": True})
            # returning with the body unfinished makes the server drop the connection mid-response
            return
        elif kind == "bad_json":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"stores": [{"id": "s1", "name": '})
        else:  # huge
            total = int(spec.get("mb", 10) * 1_000_000)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            chunk = b'"' + b"x" * 65_000 + b'",'
            await send({"type": "http.response.body", "body": b'{"items": [', "more_body": True})
            sent = 0
            while sent < total:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
            await send({"type": "http.response.body", "body": b'"end"]}'})


async def _json(send: Any, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": payload})
