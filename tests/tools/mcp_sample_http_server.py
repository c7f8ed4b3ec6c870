"""An MCP server written with the official SDK (its low-level ``Server``) served over streamable HTTP on loopback,
run as a subprocess by the MCP HTTP client tests. With ``EXPECT_TOKEN`` set, every request must carry
``Authorization: Bearer $EXPECT_TOKEN`` (else 401, before the SDK sees it); the tool ``auth_seen`` answers with the header the server received, so a test
can check both that the header from the environment arrived and that our client hides it in results. Usage:
``python mcp_sample_http_server.py PORT`` (0 picks a free port); prints ``listening at URL`` on stderr when ready.
"""

from __future__ import annotations

import os
import socket
import sys

import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from starlette.responses import JSONResponse

TOOLS = [
    types.Tool(name="pid", description="The server's process id.", input_schema={"type": "object", "properties": {}}),
    types.Tool(name="auth_seen", description="The Authorization header this server received.",
               input_schema={"type": "object", "properties": {}}),
]
seen: dict[str, str] = {}


async def list_tools(ctx, params) -> types.ListToolsResult:  # type: ignore[no-untyped-def]
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx, params) -> types.CallToolResult:  # type: ignore[no-untyped-def]
    text = str(os.getpid()) if params.name == "pid" else seen.get("authorization", "")
    return types.CallToolResult(content=[types.TextContent(text=text)])


def guarded(app, expected: str):  # type: ignore[no-untyped-def]
    async def asgi(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            got = headers.get("authorization", "")
            if got != f"Bearer {expected}":
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
            seen["authorization"] = got
        await app(scope, receive, send)
    return asgi


def main() -> None:
    port = int(sys.argv[1])
    server = Server("sample-http", on_list_tools=list_tools, on_call_tool=call_tool)
    app = server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    if os.environ.get("EXPECT_TOKEN"):
        app = guarded(app, os.environ["EXPECT_TOKEN"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    userver = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1))
    original = userver.startup

    async def startup(sockets=None):  # type: ignore[no-untyped-def]
        await original(sockets=sockets)
        print(f"listening at http://127.0.0.1:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)

    userver.startup = startup  # type: ignore[method-assign]
    userver.run(sockets=[sock])


if __name__ == "__main__":
    main()
