"""The ``kind: mcp`` entries of YAML registries: one entry, one MCP server, its tools joined to the registry::

    network: {allow_loopback: true}        # an http server on this machine, as for HTTP tools
    tools:
      - kind: mcp
        name: files
        command: python
        args: [-m, my_mcp_server]
        env: {API_TOKEN: "${API_TOKEN}"}
        tools: [read_file, list_dir]       # the allow-list
        prefix: files.
        timeout_s: 30
      - {kind: mcp, url: "http://127.0.0.1:8000/mcp", headers: {Authorization: "Bearer ${MCP_TOKEN}"}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keye_agent.errors import ConfigError, KeyeAgentError, NetworkPolicyError

from .base import Tool
from .mcp_client import MCPServerConfig, mcp_tools
from .netguard import NetPolicy, check_url
from .yaml_source import SourceMap

__all__ = ["mcp_entry_tools"]


def mcp_entry_tools(spec: dict[str, Any], at: tuple[Any, ...], smap: SourceMap, policy: NetPolicy, base_dir: Path,
                    auth_headers: dict[str, str]) -> list[Tool]:
    """Start (or reach) the server of one entry and return its tools; errors point at the entry."""
    if ("command" in spec) == ("url" in spec):
        raise smap.error("an mcp entry needs exactly one of 'command' (a stdio server) or 'url' (streamable HTTP)",
                         at, hint="command: python, args: [server.py] -- or -- url: http://127.0.0.1:8000/mcp")
    if "url" in spec:
        try:
            check_url(spec["url"], policy)
        except NetworkPolicyError as e:
            raise smap.error(str(e), (*at, "url")) from None
    elif "headers" in spec or "auth" in spec:
        raise smap.error("headers and auth apply to url servers only", (*at, "headers" if "headers" in spec else "auth"),
                         hint="pass a stdio server its credentials through env:")
    cwd = spec.get("cwd")
    label = spec.get("name") or spec.get("url") or spec["command"]
    try:
        config = MCPServerConfig(
            name=label, command=spec.get("command"), args=[str(a) for a in spec.get("args") or []],
            env={k: str(v) for k, v in (spec.get("env") or {}).items()},
            cwd=str((base_dir / cwd).resolve()) if cwd else None, url=spec.get("url"),
            headers={**{k: str(v) for k, v in (spec.get("headers") or {}).items()}, **auth_headers},
            tools=list(spec["tools"]) if "tools" in spec else None, prefix=spec.get("prefix", ""),
            connect_timeout_s=float(spec.get("connect_timeout_s", 30.0)), timeout_s=float(spec.get("timeout_s", 60.0)),
            max_result_bytes=int(spec.get("max_result_bytes", 1_000_000)),
            mutates_state=spec.get("mutates_state"), requires_approval=spec.get("requires_approval"),
        )
        return mcp_tools(config)
    except ConfigError as e:
        raise smap.error(str(e.args[0]), (*at, "tools") if "allow-list" in (e.hint or "") else at, hint=e.hint) from None
    except KeyeAgentError as e:
        raise smap.error(str(e.args[0]), (*at, "command") if "command" in spec else (*at, "url"),
                         hint=e.hint) from None
