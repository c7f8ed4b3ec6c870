"""A :class:`ToolRegistry` served as an MCP server (stdio or streamable HTTP), for ``keye-agent mcp serve``.

Every call goes through :meth:`ToolRegistry.call`, so an MCP client gets exactly what our agent gets: arguments
checked against the JSON Schema, the network policy of each HTTP tool, retries, redaction, and every failure as an
error result (``isError``) whose text says what to fix. Tools that change state are listed (annotated as
destructive) but refused unless the server was started with ``allow_mutating``: nobody is there to approve them.

Example::

    server = mcp_server(load_registry("examples/store.yaml"))
    asyncio.run(serve_stdio(server))
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import Any

from keye_agent.types import ToolCall

from .base import Tool
from .registry import ToolRegistry

__all__ = ["mcp_server", "serve_http", "serve_stdio"]


def _mcp_tool(t: Tool) -> Any:
    import mcp_types as types

    return types.Tool(
        name=t.name, description=t.description, input_schema=t.parameters,
        annotations=types.ToolAnnotations(read_only_hint=not t.mutates_state, destructive_hint=t.mutates_state),
    )


def _result(r: Any) -> Any:
    import mcp_types as types

    if not r.ok:
        return types.CallToolResult(content=[types.TextContent(text=f"{r.error_type}: {r.error_detail}")], is_error=True)
    blocks: list[Any] = [types.TextContent(text=r.content)] if r.content or not r.attachments else []
    for a in r.attachments:
        if a.data is not None:
            blocks.append(types.ImageContent(data=a.data, mime_type=a.mime_type))
        elif a.url is not None:
            blocks.append(types.TextContent(text=f"[image at {a.url}]"))
    return types.CallToolResult(content=blocks)


def mcp_server(registry: ToolRegistry, *, allow_mutating: bool = False, name: str = "keye-agent") -> Any:
    """The low-level SDK ``Server`` answering ``tools/list`` and ``tools/call`` from ``registry``."""
    import mcp_types as types
    from mcp.server.lowlevel import Server

    def approve(t: Tool, call: ToolCall) -> bool:
        return allow_mutating

    async def list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=[_mcp_tool(t) for t in registry])

    async def call_tool(ctx: Any, params: Any) -> Any:
        call = ToolCall(id=f"mcp-{uuid.uuid4().hex[:12]}", name=params.name, arguments=dict(params.arguments or {}))
        t = registry.find(params.name)
        if t is not None and t.needs_approval and not allow_mutating:
            return types.CallToolResult(is_error=True, content=[types.TextContent(
                text=f"ToolApprovalDenied: {t.name!r} changes state and this server refuses such tools; restart "
                     "it with --allow-mutating to allow them")])
        return _result(await registry.call(call, approve=approve))

    def input_schema(tool_name: str) -> dict[str, Any] | None:
        t = registry.find(tool_name)
        return None if t is None else t.parameters

    return Server(name, version=_version(), on_list_tools=list_tools, on_call_tool=call_tool,
                  get_tool_input_schema=input_schema)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keye-agent")
    except PackageNotFoundError:
        return "0"


async def serve_stdio(server: Any) -> None:
    """Serve over this process's stdin and stdout until the client closes stdin."""
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def serve_http(server: Any, *, host: str = "127.0.0.1", port: int = 8000, path: str = "/mcp",
               on_ready: Callable[[str], None] | None = None) -> None:
    """Serve streamable HTTP on ``host:port`` (loopback by default) until interrupted; ``on_ready`` gets the
    endpoint URL once the socket is bound (port 0 picks a free one)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    app = server.streamable_http_app(streamable_http_path=path, host=host)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    userver = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    if on_ready is not None:
        original = userver.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            on_ready(f"http://{shown}:{bound}{path}")

        userver.startup = startup  # type: ignore[method-assign]
    userver.run(sockets=[sock])
