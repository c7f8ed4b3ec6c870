"""`keye-agent mcp serve`: our tools (YAML/Python registries, the sandbox, search) served to any MCP client."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from keye_agent.errors import ConfigError

from .setup import ToolOptions, build_registry, close_tools, prepare_sandbox

app = typer.Typer(help="Model Context Protocol: serve our tools to MCP clients.", no_args_is_help=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    tools: Annotated[list[Path] | None, typer.Option("--tools", "-t", help="A YAML tool registry or a Python file of @tool functions (repeatable).")] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox/--no-sandbox", help="Serve the run_code tool (Docker sandbox).")] = False,
    search: Annotated[str | None, typer.Option("--search", help="Serve web_search and fetch_url: ddgs, searxng:URL or local:PATH.")] = None,
    mcp: Annotated[list[str] | None, typer.Option("--mcp", help="Also pass on the tools of an MCP server: a URL or a command line (repeatable).")] = None,
    transport: Annotated[str, typer.Option("--transport", help="stdio (a client starts us) or http (streamable HTTP).")] = "stdio",
    host: Annotated[str, typer.Option("--host", help="HTTP: the address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="HTTP: the port (0 picks a free one).")] = 8000,
    allow_mutating: Annotated[bool, typer.Option("--allow-mutating", help="Run tools that change state (orders, writes); refused by default, as no one is there to approve them.")] = False,
) -> None:
    """Serve the tools of these options over MCP (stdout carries the protocol; messages go to stderr)."""
    from keye_agent.tools.mcp_server import mcp_server, serve_http, serve_stdio

    if transport not in ("stdio", "http"):
        raise ConfigError(f"--transport {transport!r} is neither stdio nor http")
    err = Console(stderr=True, highlight=False)
    if transport == "http" and not _loopback(host):
        err.print(f"[yellow]warning:[/] serving tools on {host}, reachable from other machines; anyone who can "
                  "reach it can call them")
    opts = ToolOptions(files=list(tools or []), sandbox=sandbox, search=search)
    if mcp:
        opts.mcp = list(mcp)
    registry = build_registry(opts)
    try:
        if not len(registry):
            raise ConfigError("no tools to serve", hint="add --tools FILE, --sandbox, --search SPEC or --mcp SERVER")
        if sandbox:
            prepare_sandbox(err)
        server = mcp_server(registry, allow_mutating=allow_mutating)
        if transport == "stdio":
            asyncio.run(serve_stdio(server))
        else:
            serve_http(server, host=host, port=port,
                       on_ready=lambda url: err.print(f"serving {len(registry)} tool(s) over MCP at {url}"))
    finally:
        close_tools(registry)
