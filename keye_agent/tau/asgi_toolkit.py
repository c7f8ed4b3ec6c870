"""`AsgiToolkit`: a YAML tool registry whose HTTP tools act on one in-process ASGI app per toolkit.

The registry file is loaded once per process (loading checks every schema, which is slow) with a transport that
forwards each request to the app of the toolkit whose tool is running, named in a context variable; so
concurrent simulations share the tool definitions and never an app. The domain says how to read the app's state
(``dump``) for hashing, and how to merge initialization data into it (``load``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import httpx

from keye_agent.errors import KeyeAgentError
from keye_agent.tools import Tool, ToolRegistry
from keye_agent.tools.yaml_registry import load_registry

from .toolkit import Toolkit, deep_merge, json_hash

_CURRENT: ContextVar[httpx.AsyncBaseTransport | None] = ContextVar("keye_tau_asgi_transport", default=None)
_REGISTRIES: dict[Path, ToolRegistry] = {}


class _RouteToCurrent(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = _CURRENT.get()
        if target is None:
            raise KeyeAgentError("a domain HTTP tool ran outside its toolkit (no in-process app to send it to)")
        return await target.handle_async_request(request)


def shared_registry(path: str | Path) -> ToolRegistry:
    """The registry file's tools, loaded once per process, sending requests to the running toolkit's app."""
    key = Path(path).resolve()
    if key not in _REGISTRIES:
        _REGISTRIES[key] = load_registry(key, transport=_RouteToCurrent(), env={})
    return _REGISTRIES[key]


class AsgiToolkit(Toolkit):
    """Tools of ``registry_path`` over ``app``. ``db`` is whatever ``state_of(app)`` gives (defaults to the app)."""

    def __init__(self, registry_path: str | Path, app: Any, *, dump: Callable[[Any], Any],
                 load: Callable[[Any, Any], None] | None = None,
                 state_of: Callable[[Any], Any] | None = None) -> None:
        self.registry_path = Path(registry_path)
        self.app = app
        self._dump, self._load = dump, load
        self._transport = httpx.ASGITransport(app=app)
        super().__init__(state_of(app) if state_of else app)

    def _shared(self) -> ToolRegistry:
        return shared_registry(self.registry_path)

    def tool_names(self) -> list[str]:  # type: ignore[override]
        return self._shared().names

    def has_tool(self, name: str) -> bool:
        return name in self._shared()

    def tool_kind(self, name: str) -> str:  # type: ignore[override]
        return "write" if self.mutates(name) else "read"

    def mutates(self, name: str) -> bool:
        return bool(self._shared().get(name).mutates_state)

    def _make_tool(self, name: str) -> Tool:
        proto = self._shared().get(name)

        async def call(**arguments: Any) -> Any:
            token = _CURRENT.set(self._transport)
            try:
                return await proto.fn(**arguments)
            finally:
                _CURRENT.reset(token)

        t = copy.copy(proto)
        t.fn = call
        return t

    async def invoke(self, name: str, arguments: dict[str, Any]) -> Any:
        return await self._make_tool(name).fn(**arguments)

    def dump_db(self) -> Any:
        return self._dump(self.app)

    def db_hash(self) -> str | None:
        return json_hash(self.dump_db())

    def update_db(self, data: dict[str, Any] | None) -> None:
        if self._load is None:
            raise KeyeAgentError(f"the domain of {self.registry_path} takes no initialization data",
                                 hint="give its app module a load_state(app, data) function")
        self._load(self.app, deep_merge(self.dump_db(), data or {}))

    async def aclose(self) -> None:
        await self._transport.aclose()
