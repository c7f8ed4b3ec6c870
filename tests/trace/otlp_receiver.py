"""A real OTLP/HTTP receiver on loopback for the trace tests: a tiny http.server that decodes each
ExportTraceServiceRequest with opentelemetry-proto and keeps its spans (``server.spans``) as plain dicts."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class _Receiver(BaseHTTPRequestHandler):
    spans: list[dict[str, Any]]
    resources: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            self.server.resources.append({a.key: _value(a.value) for a in rs.resource.attributes})  # type: ignore[attr-defined]
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.server.spans.append({  # type: ignore[attr-defined]
                        "path": self.path, "name": s.name, "span_id": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(), "trace_id": s.trace_id.hex(),
                        "status": s.status.code, "status_message": s.status.message,
                        "attributes": {a.key: _value(a.value) for a in s.attributes}})
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@pytest.fixture
def otlp_receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.spans = []  # type: ignore[attr-defined]
    server.resources = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
