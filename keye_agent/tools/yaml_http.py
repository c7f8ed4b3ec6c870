"""Building the HTTP tools of a YAML registry: ``kind: http`` entries and ``kind: openapi`` operations, with the
settings they share (defaults, auth read from the environment, the network policy, the URL checks)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from keye_agent.errors import ConfigError, NetworkPolicyError, ToolDefinitionError, register_secret

from .base import Tool
from .http_tool import ArgSpec, HttpSpec, make_http_tool, placeholders
from .jsonpath import JsonPath, JsonPathError
from .netguard import NetPolicy, check_url
from .openapi import OpenAPIError, load_openapi_document, operations_to_specs
from .yaml_source import SourceMap

__all__ = ["LoadSettings", "auth_from_env", "definition_error", "http_spec", "openapi_tools"]


class LoadSettings(Protocol):
    """What building a tool reads from the load in progress."""

    env: Mapping[str, str]
    transport: httpx.AsyncBaseTransport | None


def definition_error(e: ToolDefinitionError, smap: SourceMap, at: tuple[Any, ...], under: str) -> ConfigError:
    """A tool's schema problem at its line: ``("properties", "n", "default")`` of an http tool's parameters is
    ``arguments.n.default`` in the file (``under="arguments"``); of a python tool's, ``parameters.properties...``."""
    path = e.schema_path
    if under == "arguments":
        path = path[1:] if path[:1] == ("properties",) else ()
    return smap.error(str(e.args[0]), (*at, under, *path), hint=e.hint)


def _setting(spec: dict[str, Any], defaults: dict[str, Any], key: str, fallback: Any) -> Any:
    return spec[key] if key in spec else defaults.get(key, fallback)


def auth_from_env(auth: dict[str, Any] | None, at: tuple[Any, ...], smap: SourceMap, ctx: LoadSettings
          ) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query parameters) carrying the credential read from the environment."""
    if not auth or auth["type"] == "none":
        return {}, {}
    var = auth["token_env"] if auth["type"] == "bearer" else auth["key_env"]
    value = ctx.env.get(var)
    if not value:
        raise smap.error(f"auth needs the environment variable {var}, which is not set", (*at, "auth"),
                         hint=f"export {var}=<your credential> before loading this registry")
    register_secret(value)
    if auth["type"] == "bearer":
        return {"Authorization": f"Bearer {value}"}, {}
    if "query" in auth:
        return {}, {auth["query"]: value}
    return {auth.get("header", "X-API-Key"): value}, {}


def _http_settings(spec: dict[str, Any], at: tuple[Any, ...], smap: SourceMap, defaults: dict[str, Any],
                   policy: NetPolicy, ctx: LoadSettings) -> HttpSpec:
    """The settings shared by http and openapi tools, with defaults applied (no name, URL or arguments yet)."""
    auth_at = at if "auth" in spec else ("defaults",)
    auth_headers, auth_query = auth_from_env(_setting(spec, defaults, "auth", None), auth_at, smap, ctx)
    headers = {k: str(v) for k, v in {**defaults.get("headers", {}), **spec.get("headers", {})}.items()}
    return HttpSpec(
        name="_", description="_", method="GET", url="",
        headers={**headers, **auth_headers}, query=auth_query,
        timeout_s=float(_setting(spec, defaults, "timeout_s", 30.0)),
        retries=int(_setting(spec, defaults, "retries", 2)),
        max_response_bytes=int(_setting(spec, defaults, "max_response_bytes", 1_000_000)),
        retry_non_idempotent=bool(_setting(spec, defaults, "retry_non_idempotent", False)),
        policy=policy, transport=ctx.transport,
    )


def _check_base(url: str, at: tuple[Any, ...], smap: SourceMap, policy: NetPolicy, ctx: LoadSettings) -> None:
    probe = url.replace("{", "").replace("}", "")
    parts = urlsplit(probe)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise smap.error(f"{url!r} is not an absolute http(s) URL", at,
                         hint="write it like https://api.example.com/v1 (set defaults.base_url for relative paths)")
    if ctx.transport is None:
        try:
            _origin_allowed(f"{parts.scheme}://{parts.netloc}/", policy)
        except NetworkPolicyError:
            try:
                check_url(probe, policy)  # the refusal, naming the whole URL
            except NetworkPolicyError as e:
                raise smap.error(str(e), at) from None


@lru_cache(maxsize=1024)
def _origin_allowed(origin: str, policy: NetPolicy) -> bool:
    # the policy looks at the scheme and the host only; 50,000 tools of one API check it once (refusals raise,
    # and are not cached)
    check_url(origin, policy)
    return True


def http_spec(spec: dict[str, Any], at: tuple[Any, ...], smap: SourceMap, defaults: dict[str, Any],
               policy: NetPolicy, ctx: LoadSettings) -> HttpSpec:
    hs = _http_settings(spec, at, smap, defaults, policy, ctx)
    if "url" in spec:
        url, url_at = spec["url"], (*at, "url")
    else:
        base = spec.get("base_url", defaults.get("base_url"))
        if not base:
            raise smap.error(f"tool {spec['name']!r} has a relative path but no base_url", (*at, "path"),
                             hint="set base_url on the tool or under defaults, or give a full url instead")
        url, url_at = base.rstrip("/") + spec["path"], (*at, "base_url") if "base_url" in spec else (*at, "path")
    _check_base(url, url_at, smap, policy, ctx)
    method = str(spec.get("method", "GET")).upper()
    holes = placeholders(url)
    args: dict[str, ArgSpec] = {}
    for name, arg in (spec.get("arguments") or {}).items():
        loc = arg.get("in") or ("path" if name in holes else "query" if method in ("GET", "HEAD", "DELETE") else "body")
        if loc == "path" and name not in holes:
            raise smap.error(f"argument {name!r} is declared in: path but the URL has no {{{name}}}",
                             (*at, "arguments", name, "in") if "in" in arg else (*at, "arguments", name),
                             hint=f"add {{{name}}} to the path, or use in: query / body")
        schema = {k: v for k, v in arg.items() if k not in ("in", "name", "required")}
        args[name] = ArgSpec(schema=schema, location=loc, wire_name=arg.get("name", name),
                             required=loc == "path" or bool(arg.get("required", False)))
    for hole in holes:
        if hole not in args or args[hole].location != "path":
            close = difflib.get_close_matches(hole, list(args), n=1)
            raise smap.error(
                f"the URL has {{{hole}}} but no path argument {hole!r} is declared", url_at,
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + f"declare it under arguments: {hole}: {{type: string, description: ..., in: path}}",
            )
    select = None
    if "response" in spec and "select" in spec["response"]:
        expr = spec["response"]["select"]
        try:
            select = JsonPath(expr)
        except JsonPathError as e:
            line, col = smap.at((*at, "response", "select"))
            raise ConfigError(f"bad response.select {expr!r}: {e} (at character {e.position + 1})", file=smap.file,
                              line=line, column=col, hint="e.g. $.items[*].name or $.store") from None
    cap = spec.get("response", {}).get("max_bytes")
    return dataclasses.replace(
        hs, name=spec["name"], description=spec["description"], method=method, url=url, arguments=args,
        select=select, max_response_bytes=int(cap) if cap else hs.max_response_bytes,
        mutates_state=spec.get("mutates_state"), requires_approval=spec.get("requires_approval"),
    )


def openapi_tools(spec: dict[str, Any], at: tuple[Any, ...], smap: SourceMap, defaults: dict[str, Any],
                   policy: NetPolicy, base_dir: Path, ctx: LoadSettings) -> list[Tool]:
    template = _http_settings(spec, at, smap, defaults, policy, ctx)
    source = spec["spec"]
    if urlsplit(source).scheme in ("http", "https") and ctx.transport is None:
        _check_base(source, (*at, "spec"), smap, policy, ctx)
    try:
        doc, origin = load_openapi_document(source, base_dir=base_dir, policy=policy, transport=ctx.transport)
    except OpenAPIError as e:
        raise smap.error(str(e), (*at, "spec")) from None
    except NetworkPolicyError as e:
        raise smap.error(str(e), (*at, "spec")) from None
    base_url = spec.get("base_url", defaults.get("base_url") if origin is None else None)
    try:
        specs = operations_to_specs(doc, list(spec["operations"]), origin=origin, base_url=base_url,
                                    prefix=spec.get("prefix", ""), mutating=spec.get("mutating_operations"),
                                    template=template)
    except OpenAPIError as e:
        raise smap.error(str(e), (*at, "operations")) from None
    tools = []
    for s in specs:
        _check_base(s.url, (*at, "base_url") if "base_url" in spec else (*at, "spec"), smap, policy, ctx)
        try:
            tools.append(make_http_tool(s))
        except ToolDefinitionError as e:
            raise smap.error(f"operation {s.name!r} cannot become a tool: {e}", (*at, "operations")) from None
    return tools

