"""A real HTTP server on loopback that speaks ``POST /v1/chat/completions``.

Only the model is scripted: each request gets the next :class:`Reply` of the script (a JSON body, an SSE stream,
an error status, a slow answer, a stream cut mid-way). The HTTP side is real: sockets, HTTP/1.1 keep-alive,
chunked transfer encoding, and connections dropped the way a crashing server drops them.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer.

    ``body`` is sent as JSON with ``status``. With ``events`` set the answer is an SSE stream (each event a dict
    or a raw string after ``data: ``), ended by ``data: [DONE]`` unless ``done`` is False. ``cut_after`` drops the
    connection after that many events, mid chunked body. ``chunked=False`` sends the stream delimited by closing
    the connection instead. ``delay`` waits before answering.
    """

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Any] | None = None
    done: bool = True
    cut_after: int | None = None
    chunked: bool = True
    delay: float = 0.0


class ChatServer:
    """Start with ``with ChatServer([...]) as server:``; ``server.base_url`` is the API root."""

    def __init__(self, script: list[Reply]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    reply = outer.script.pop(0) if outer.script else Reply({"error": "script exhausted"}, 500)
                if self.path != "/v1/chat/completions":
                    reply = Reply({"error": {"message": f"no route {self.path}"}}, 404)
                try:
                    time.sleep(reply.delay)
                    if reply.events is None:
                        self._send_json(reply)
                    else:
                        self._send_stream(reply)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (its timeout): nothing to answer

            def _send_json(self, reply: Reply) -> None:
                data = json.dumps(reply.body).encode() if not isinstance(reply.body, str) else reply.body.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _send_stream(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                if reply.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                events = [e if isinstance(e, str) else json.dumps(e) for e in reply.events or []]
                if reply.done:
                    events.append("[DONE]")
                for n, event in enumerate(events):
                    if reply.cut_after is not None and n >= reply.cut_after:
                        self.close_connection = True  # drop the socket mid-body, as a crashed server does
                        return
                    self._write(f"data: {event}\n\n".encode(), reply.chunked)
                if reply.chunked:
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.close_connection = True

            def _write(self, data: bytes, chunked: bool) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def completion(content: str | None = None, tool_calls: list[dict[str, Any]] | None = None,
               finish: str = "stop", reasoning: str | None = None, usage: tuple[int, int] = (11, 7)) -> dict:
    """A chat.completion body."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


def wire_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def delta(finish: str | None = None, **fields: Any) -> dict[str, Any]:
    """A chat.completion.chunk event with one delta."""
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": fields, "finish_reason": finish}]}
