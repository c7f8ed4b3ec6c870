"""Tools from MCP servers: :func:`mcp_tools` connects to one (a command over stdio, or a streamable-HTTP URL) and
turns each of its tools into a :class:`Tool` of ours.

The connection lives on its own thread and event loop, so the tools work from any caller (``dispatch_sync``'s
fresh loops, an agent's loop, several threads) and the SDK's task groups stay in the one task that opened them.
It starts when the tools are built (the registry loads), is reopened once after the server drops (a crash, a
closed pipe; the call that saw the drop fails, the next one reconnects) and is closed with the tools: the stdio
child is stopped and reaped, and an ``atexit`` hook closes whatever is still open, so no server outlives us.

Example::

    tools = mcp_tools(MCPServerConfig(name="files", command="python", args=["my_server.py"], tools=["read"]))
    with ToolRegistry(tools) as registry:
        ...
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import re
import shlex
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from keye_agent.errors import ConfigError, KeyeAgentError, ToolDefinitionError, ToolExecutionError

from .base import Tool, ToolOutput
from .mcp_results import to_tool_output
from .registry import ToolRegistry

__all__ = ["MCPConnection", "MCPServerConfig", "add_mcp_server", "mcp_tools", "server_from_spec"]

log = logging.getLogger(__name__)

_LIST_PAGE_CAP = 100
_LIVE: weakref.WeakSet[MCPConnection] = weakref.WeakSet()


@dataclass
class MCPServerConfig:
    """How to reach one MCP server and which of its tools to take."""

    name: str
    """A label for errors and logs (the YAML entry's ``name``, or the command / URL)."""
    command: str | None = None
    """The executable of a stdio server; exactly one of ``command`` and ``url``."""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of the child, over the SDK's safe default set (PATH, HOME, ...): not our whole env."""
    cwd: str | None = None
    url: str | None = None
    """A streamable-HTTP endpoint, e.g. http://127.0.0.1:8000/mcp."""
    headers: dict[str, str] = field(default_factory=dict)
    tools: list[str] | None = None
    """The allow-list of tool names; None takes every tool the server lists."""
    prefix: str = ""
    """Put before each tool's name (``files.`` -> ``files.read``), to keep two servers' names apart."""
    connect_timeout_s: float = 30.0
    timeout_s: float | None = 60.0
    """Limit of one call; None for none."""
    max_result_bytes: int = 1_000_000
    mutates_state: bool | None = None
    """None: from each tool's annotations (only a tool the server marks read-only counts as not mutating)."""
    requires_approval: bool | None = None

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ConfigError(f"MCP server {self.name!r} needs exactly one of a command (stdio) or a url (HTTP)")

    @property
    def label(self) -> str:
        return self.name


def _unwrap(e: BaseException) -> BaseException:
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e


def _describe(e: BaseException) -> str:
    e = _unwrap(e)
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_describe(x) for x in e.exceptions)
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class MCPConnection:
    """One live session with an MCP server, owned by a background thread (see the module docstring)."""

    def __init__(self, config: MCPServerConfig) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=f"mcp-{config.name}"[:40])
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        self._owner: asyncio.Task[None] | None = None
        self._generation = 0
        self._lock: asyncio.Lock | None = None
        self._broken: str | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._http_status: int | None = None  # the last HTTP error status the server answered (the SDK drops it)

    # -- opening -----------------------------------------------------------------------------------------------

    def start(self) -> list[Any]:
        """Connect and list the server's tools (every page); raises :class:`KeyeAgentError` naming the server."""
        self._thread.start()
        _LIVE.add(self)
        fut = asyncio.run_coroutine_threadsafe(self._open(list_tools=True), self._loop)
        try:
            return fut.result(timeout=self.config.connect_timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            self.close()
            raise KeyeAgentError(f"MCP server {self.config.label!r} did not answer within "
                                 f"{self.config.connect_timeout_s:g} s of starting",
                                 hint="check that it speaks MCP on stdout (logs go to stderr), or raise "
                                      "connect_timeout_s") from None
        except KeyeAgentError:
            self.close()
            raise
        except Exception as e:  # noqa: BLE001 - whatever the SDK or the child raised, named with the server
            self.close()
            raise KeyeAgentError(f"cannot connect to MCP server {self.config.label!r}: {self._why(e)}",
                                 hint=self._hint()) from None

    def _why(self, e: BaseException) -> str:
        if self._http_status is not None:
            return f"the server answered HTTP {self._http_status} ({_describe(e)})"
        return _describe(e)

    def _hint(self) -> str:
        if self._http_status in (401, 403):
            return ("the server refused the credentials: check the entry's headers/auth and the environment "
                    "variables they name")
        if self.config.command is not None:
            return f"run `{' '.join([self.config.command, *self.config.args])}` by hand to see why it fails"
        return f"is the server listening at {self.config.url}?"

    def _transport(self) -> Any:
        from mcp import Client, StdioServerParameters

        c = self.config
        if c.command is not None:
            server: Any = StdioServerParameters(command=c.command, args=list(c.args), env=dict(c.env) or None,
                                                cwd=c.cwd)
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            # the SDK owns (and closes) an http client it creates; one we pass in is ours to close: the stack does
            async def note_status(response: Any) -> None:
                self._http_status = response.status_code if response.status_code >= 400 else None

            http = httpx2.AsyncClient(headers=dict(c.headers), timeout=httpx2.Timeout(30.0, read=300.0),
                                      event_hooks={"response": [note_status]})
            server = _OwnedHttp(streamable_http_client(c.url or "", http_client=http), http)
        return Client(server, read_timeout_seconds=c.timeout_s, cache=None)

    async def _open(self, *, list_tools: bool) -> list[Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        ready: asyncio.Future[list[Any]] = self._loop.create_future()
        stop = asyncio.Event()
        self._stop = stop
        self._owner = asyncio.create_task(self._own(ready, stop, list_tools))
        return await ready

    async def _own(self, ready: asyncio.Future[list[Any]], stop: asyncio.Event, list_tools: bool) -> None:
        """Holds the SDK client's context for the connection's whole life (its task groups need one task)."""
        try:
            async with self._transport() as client:
                tools: list[Any] = []
                if list_tools:
                    cursor = None
                    for _ in range(_LIST_PAGE_CAP):
                        page = await client.list_tools(cursor=cursor)
                        tools.extend(page.tools)
                        cursor = page.next_cursor
                        if cursor is None:
                            break
                self._client = client
                self._generation += 1
                ready.set_result(tools)
                await stop.wait()
        except BaseException as e:  # noqa: BLE001 - handed to the opener; after opening, only logged
            if not ready.done():
                ready.set_exception(e if isinstance(e, Exception) else RuntimeError(_describe(e)))
            else:
                log.debug("MCP server %r: connection ended with %s", self.config.label, _describe(e))
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            if self._stop is stop:
                self._client = None

    # -- calling -----------------------------------------------------------------------------------------------

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call one tool; returns the SDK's ``CallToolResult``. Safe from any thread and event loop; cancelling
        the caller (a timeout) cancels the request on the connection's loop."""
        if self._closed:
            raise ToolExecutionError(f"the MCP server {self.config.label!r} is closed", tool=name)
        fut = asyncio.run_coroutine_threadsafe(self._call(name, arguments), self._loop)
        return await asyncio.wrap_future(fut)

    async def _call(self, name: str, arguments: dict[str, Any]) -> Any:
        from mcp import MCPError
        from mcp_types.jsonrpc import CONNECTION_CLOSED

        assert self._lock is not None
        async with self._lock:
            if self._client is None:
                await self._reconnect(name)
            client, generation = self._client, self._generation
        try:
            return await client.call_tool(name, arguments)
        except MCPError as e:
            if e.code != CONNECTION_CLOSED:
                raise ToolExecutionError(f"MCP server {self.config.label!r} refused the call to {name!r}: "
                                         f"{e.message} (error {e.code})", tool=name) from None
            self._dropped(generation)
            raise ToolExecutionError(f"MCP server {self.config.label!r} closed the connection during the call to "
                                     f"{name!r} (it crashed or exited); it is restarted on the next call",
                                     tool=name) from None
        except (OSError, EOFError) as e:
            self._dropped(generation)
            raise ToolExecutionError(f"lost the connection to MCP server {self.config.label!r} during {name!r}: "
                                     f"{_describe(e)}", tool=name, transient=False) from None

    def _dropped(self, generation: int) -> None:
        if generation == self._generation and self._stop is not None:
            self._stop.set()  # the old session's context unwinds (the dead child is reaped) in its own task
            self._client = None

    async def _reconnect(self, name: str) -> None:
        if self._broken is not None:
            raise ToolExecutionError(self._broken, tool=name)
        log.warning("MCP server %r dropped; reconnecting once", self.config.label)
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                await self._open(list_tools=False)
        except BaseException as e:  # noqa: BLE001 - a failed restart is final for this connection, and said so
            if isinstance(e, asyncio.CancelledError) and not isinstance(e, TimeoutError):
                raise
            self._broken = (f"MCP server {self.config.label!r} dropped and could not be restarted: {_describe(e)}; "
                            "restart the agent once the server is fixed")
            raise ToolExecutionError(self._broken, tool=name) from None

    # -- closing -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the session (the stdio child is stopped and reaped) and the thread; idempotent, any thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _LIVE.discard(self)
        if not self._thread.is_alive():
            self._loop.close()
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            fut.result(timeout=15)
        except (concurrent.futures.TimeoutError, Exception) as e:  # noqa: BLE001 - closing must finish
            log.warning("MCP server %r did not close cleanly: %s", self.config.label, _describe(e))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()
        owner = self._owner
        if owner is not None and not owner.done():
            try:
                async with asyncio.timeout(10):
                    await owner
            except TimeoutError:
                owner.cancel()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class _OwnedHttp:
    """A streamable-HTTP transport that also closes the httpx2 client we made for it (headers, timeouts)."""

    def __init__(self, transport: Any, http: Any) -> None:
        self._transport, self._http = transport, http

    async def __aenter__(self) -> Any:
        await self._http.__aenter__()
        try:
            return await self._transport.__aenter__()
        except BaseException:
            await self._http.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self._transport.__aexit__(*exc)
        finally:
            await self._http.__aexit__(None, None, None)


@atexit.register
def _close_all() -> None:
    for conn in list(_LIVE):
        conn.close()


def _mutates(config: MCPServerConfig, spec: Any) -> bool:
    if config.mutates_state is not None:
        return config.mutates_state
    ann = getattr(spec, "annotations", None)
    return not (ann is not None and ann.read_only_hint is True)


def _make_tool(conn: MCPConnection, spec: Any) -> Tool:
    c = conn.config
    remote = spec.name

    async def call_remote(**arguments: Any) -> ToolOutput:
        result = await conn.call(remote, arguments)
        return to_tool_output(result, tool=remote, server=c.label, max_bytes=c.max_result_bytes)

    description = (spec.description or "").strip() or f"The tool {remote!r} of the MCP server {c.label!r}."
    return Tool(name=f"{c.prefix}{remote}", description=description, parameters=dict(spec.input_schema),
                fn=call_remote, timeout_s=c.timeout_s, retries=0, mutates_state=_mutates(c, spec),
                requires_approval=c.requires_approval, on_close=conn.close,
                metadata={"mcp_server": c.label, "mcp_tool": remote})


def mcp_tools(config: MCPServerConfig, *, skipped: dict[str, ToolDefinitionError] | None = None) -> list[Tool]:
    """Connect to the server and return its tools (those on ``config.tools`` when it is set).

    A tool whose input schema is not a valid JSON Schema (or whose name we cannot use) is left out with a warning
    and recorded in ``skipped``; when the allow-list names it, or names a tool the server lacks, the connection
    is closed and a :class:`ConfigError` raised. Every returned tool closes the shared connection on close.
    """
    conn = MCPConnection(config)
    listed = conn.start()
    try:
        by_name = {s.name: s for s in listed}
        if config.tools is not None:
            missing = [n for n in config.tools if n not in by_name]
            if missing:
                raise ConfigError(f"MCP server {config.label!r} has no tool {missing[0]!r}; it offers: "
                                  f"{', '.join(sorted(by_name)) or 'none'}", hint="fix the allow-list (tools:)")
            chosen = [by_name[n] for n in config.tools]
        else:
            chosen = listed
        tools: list[Tool] = []
        for spec in chosen:
            try:
                tools.append(_make_tool(conn, spec))
            except ToolDefinitionError as e:
                if config.tools is not None:
                    raise ConfigError(f"MCP server {config.label!r}: {e}",
                                      hint="the server's tool is broken; remove it from the allow-list") from None
                log.warning("MCP server %r: left out %r: %s", config.label, spec.name, e)
                if skipped is not None:
                    skipped[spec.name] = e
        return tools
    except BaseException:
        conn.close()
        raise


_NAMED = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]{0,30})=(?=\S)")


def server_from_spec(spec: str) -> MCPServerConfig:
    """An ``--mcp`` value as a config: ``[NAME=]URL`` or ``[NAME=]COMMAND ARGS...``; a NAME prefixes the server's
    tool names (``NAME.tool``), keeping them apart from tools of the same name elsewhere."""
    text = spec.strip()
    prefix = ""
    m = _NAMED.match(text)
    if m and not text.startswith(("http://", "https://")):
        prefix, text = f"{m.group(1)}.", text[m.end():]
    if not text:
        raise ConfigError(f"--mcp {spec!r} names no server", hint="give a URL (http://127.0.0.1:8000/mcp) or a "
                                                                  "command line ('python my_server.py')")
    if text.startswith(("http://", "https://")):
        return MCPServerConfig(name=prefix.rstrip(".") or text, url=text, prefix=prefix)
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise ConfigError(f"--mcp {spec!r} is not a valid command line: {e}") from None
    return MCPServerConfig(name=prefix.rstrip(".") or argv[0], command=argv[0], args=argv[1:], prefix=prefix)


def add_mcp_server(registry: ToolRegistry, spec: str | MCPServerConfig) -> list[Tool]:
    """Connect to a server (an ``--mcp`` value or a config) and register its tools; a name already in the
    registry is a :class:`ConfigError` (and nothing of the server stays open)."""
    config = server_from_spec(spec) if isinstance(spec, str) else spec
    tools = mcp_tools(config)
    clash = next((t.name for t in tools if t.name in registry), None)
    if clash is not None:
        for t in tools:
            t.close()
        raise ConfigError(f"MCP server {config.label!r} has a tool {clash!r}, and the registry already holds one "
                          "of that name", hint="give the server a name to prefix its tools: --mcp NAME=SERVER "
                                               "(YAML: prefix: NAME.)")
    for t in tools:
        registry.register(t)
    return tools
