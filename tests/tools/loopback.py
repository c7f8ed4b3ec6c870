"""A scriptable HTTP server on a loopback port (stdlib ``http.server`` in a thread) for the hardening tests.

Each route is a function ``(handler) -> None`` that writes the whole response itself, so a test controls every
byte: echoed request headers, error bodies of a chosen length, stacked gzip layers, a body dripped slowly.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[BaseHTTPRequestHandler], None]


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@contextmanager
def serve(routes: dict[str, Route], seen: list[str] | None = None) -> Iterator[str]:
    """Serve ``routes`` (keyed by path, query excluded) on 127.0.0.1; yields the base URL. Raw request targets
    are appended to ``seen``; an unknown path gets 404 with the target echoed."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
            if seen is not None:
                seen.append(self.path)
            route = routes.get(self.path.partition("?")[0])
            if route is None:
                reply(self, 404, f"no route for {self.path}".encode())
            else:
                route(self)

        do_POST = do_GET  # noqa: N815

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up, as the capped ones do
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
