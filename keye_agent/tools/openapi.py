"""OpenAPI 3 documents to HTTP tools: one tool per allowed operation.

Path, query and header parameters become arguments in their place; a JSON request body of type object contributes
its properties as body arguments (any other JSON body becomes one ``body`` argument). Local ``$ref``\\s
(``#/components/...``) are resolved; remote ones are refused, because following them would fetch from anywhere.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from keye_agent._sync import run_sync

from ._yaml_compose import compose
from .decoding import ACCEPT_ENCODING, DecodingError, read_decoded
from .http_tool import ArgSpec, HttpSpec
from .netguard import NetPolicy, guarded_async_client

__all__ = ["OpenAPIError", "load_openapi_document", "operations_to_specs"]

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_MAX_REF_DEPTH = 32
_MAX_SPEC_BYTES = 5_000_000
FETCH_DEADLINE_S = 30.0
"""The most one fetch of a ``spec:`` URL may take, redirects and every byte of the body included."""


class OpenAPIError(ValueError):
    """A document that is not a usable OpenAPI 3 document, or an allow-list naming unknown operations."""


def load_openapi_document(source: str, *, base_dir: Path, policy: NetPolicy,
                          transport: httpx.AsyncBaseTransport | None = None) -> tuple[dict[str, Any], str | None]:
    """(document, URL it came from or None). ``source`` is a URL or a path relative to ``base_dir``."""
    if urlsplit(source).scheme in ("http", "https"):
        text = _fetch_blocking(source, policy, transport)
        origin: str | None = source
    else:
        p = (base_dir / source).resolve()
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise OpenAPIError(f"cannot read OpenAPI document {str(p)!r}: {e.strerror or e}") from None
        origin = None
    try:
        # YAML through the registry's reader: the same limits on aliases and nesting (a spec may be hostile)
        doc = json.loads(text) if text.lstrip().startswith("{") else compose(text, source)[0]
    except ValueError as e:
        raise OpenAPIError(f"the OpenAPI document {source!r} is neither valid JSON nor YAML: {e}") from None
    except RecursionError:
        raise OpenAPIError(f"the OpenAPI document {source!r} is nested too deeply to read") from None
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3"):
        raise OpenAPIError(f"{source!r} is not an OpenAPI 3 document (no 'openapi: 3.x' field)")
    if not isinstance(doc.get("paths"), dict):
        raise OpenAPIError(f"{source!r} has no 'paths' mapping")
    return doc, origin


def _fetch_blocking(url: str, policy: NetPolicy, transport: httpx.AsyncBaseTransport | None) -> str:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_sync(_fetch(url, policy, transport))
    # loading a registry from async code (a runner, the REPL): fetch on a worker thread's own loop
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keye-openapi") as pool:
        return pool.submit(run_sync, _fetch(url, policy, transport)).result()


async def _fetch(url: str, policy: NetPolicy, transport: httpx.AsyncBaseTransport | None) -> str:
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    client = (httpx.AsyncClient(transport=transport, timeout=30, follow_redirects=True, headers=headers)
              if transport is not None
              else guarded_async_client(policy, timeout=30, follow_redirects=True, headers=headers))
    try:
        # one deadline for the whole fetch: httpx's timeout is per read, and a server dripping a byte a second
        # would hold the load forever
        async with asyncio.timeout(FETCH_DEADLINE_S), client, client.stream("GET", url) as r:
            if r.status_code != 200:
                raise OpenAPIError(f"fetching the OpenAPI document {url!r} gave HTTP {r.status_code}")
            body, over = await read_decoded(r, _MAX_SPEC_BYTES)
            encoding = r.charset_encoding or "utf-8"
    except TimeoutError:
        raise OpenAPIError(f"fetching the OpenAPI document {url!r} took longer than {FETCH_DEADLINE_S:g} s") from None
    except (httpx.HTTPError, DecodingError) as e:
        raise OpenAPIError(f"cannot fetch the OpenAPI document {url!r}: {type(e).__name__}: {e}") from None
    if over:
        raise OpenAPIError(f"the OpenAPI document {url!r} is over {_MAX_SPEC_BYTES:,} bytes")
    return body.decode(encoding, "replace")


def _resolver(doc: dict[str, Any]) -> Callable[[Any], Any]:
    def resolve(node: Any, depth: int = 0) -> Any:
        if depth > _MAX_REF_DEPTH:
            return {}  # a recursive schema: the model gets the outer levels, the server validates the rest
        if isinstance(node, dict):
            if "$ref" in node:
                ref = node["$ref"]
                if not isinstance(ref, str) or not ref.startswith("#/"):
                    raise OpenAPIError(f"only local $ref (#/...) are supported, got {ref!r}")
                target: Any = doc
                for part in ref[2:].split("/"):
                    part = part.replace("~1", "/").replace("~0", "~")
                    if not isinstance(target, dict) or part not in target:
                        raise OpenAPIError(f"$ref {ref!r} points to nothing in the document")
                    target = target[part]
                return resolve(copy.deepcopy(target), depth + 1)
            return {k: resolve(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v, depth + 1) for v in node]
        return node

    return resolve


def _tool_name(prefix: str, op_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", prefix + op_id)
    if not re.match(r"[A-Za-z_]", name):
        name = "_" + name
    return name[:64]


def _clean_schema(schema: Any) -> dict[str, Any]:
    """OpenAPI 3.0 schema -> JSON Schema 2020-12 (nullable, no OpenAPI-only keywords)."""
    if not isinstance(schema, dict):
        return {}
    out = {k: v for k, v in schema.items() if k not in ("example", "xml", "externalDocs", "discriminator",
                                                         "readOnly", "writeOnly", "deprecated", "nullable")}
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _clean_schema(out[key])
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _clean_schema(v) for k, v in out["properties"].items()}
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(out.get(key), list):
            out[key] = [_clean_schema(s) for s in out[key]]
    return out


def list_operations(doc: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any], list[Any]]]:
    """operationId -> (method, path, operation, path-level parameters). Unnamed operations get ``method_path``."""
    ops: dict[str, tuple[str, str, dict[str, Any], list[Any]]] = {}
    for path, item in doc["paths"].items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            op_id = op.get("operationId") or re.sub(r"[^A-Za-z0-9]+", "_", f"{method}_{path}").strip("_")
            ops[op_id] = (method.upper(), path, op, shared)
    return ops


def operations_to_specs(
    doc: dict[str, Any], allowed: list[str], *, origin: str | None, base_url: str | None, prefix: str = "",
    mutating: list[str] | None = None, template: HttpSpec,
) -> list[HttpSpec]:
    """One :class:`HttpSpec` per allowed operation; ``template`` gives the shared settings (auth, timeout...)."""
    ops = list_operations(doc)
    if allowed == ["*"]:
        allowed = list(ops)
    unknown = [a for a in allowed if a not in ops]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(ops), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise OpenAPIError(f"operation {unknown[0]!r} is not in the document; {hint}available: {', '.join(sorted(ops))}")
    server = base_url
    if server is None:
        servers = doc.get("servers") or [{"url": "/"}]
        server = str(servers[0].get("url", "/"))
        if not urlsplit(server).scheme:
            if origin is None:
                raise OpenAPIError(
                    f"the document's server URL {server!r} is relative and the document is a local file; set base_url"
                )
            server = urljoin(origin, server)
    resolve = _resolver(doc)
    specs = []
    for op_id in allowed:
        method, path, op, shared = ops[op_id]
        op = resolve(op)
        params = {(p.get("in"), p.get("name")): p for p in resolve(shared) + (op.get("parameters") or [])}
        args: dict[str, ArgSpec] = {}
        for (loc, pname), p in params.items():
            if loc not in ("path", "query", "header") or not pname:
                continue  # cookies are not something a model should set
            schema = _clean_schema(p.get("schema") or {"type": "string"})
            if p.get("description"):
                schema["description"] = p["description"]
            argname = re.sub(r"[^A-Za-z0-9_]", "_", pname)
            args[argname] = ArgSpec(schema=schema, location=loc, wire_name=pname,
                                    required=bool(p.get("required")) or loc == "path")
        body = ((op.get("requestBody") or {}).get("content") or {}).get("application/json")
        if body is not None:
            bschema = _clean_schema(body.get("schema") or {})
            required_body = bool((op.get("requestBody") or {}).get("required"))
            if bschema.get("type") == "object" and isinstance(bschema.get("properties"), dict):
                req = set(bschema.get("required") or [])
                for prop, sub in bschema["properties"].items():
                    argname = prop if prop not in args else f"body_{prop}"
                    args[argname] = ArgSpec(schema=sub, location="body", wire_name=prop, required=prop in req)
            else:
                args["body"] = ArgSpec(schema=bschema or {}, location="body", wire_name="", required=required_body)
        desc = " ".join(x.strip() for x in (op.get("summary"), op.get("description")) if x) or f"{method} {path}"
        mutates = op_id in mutating if mutating is not None else method not in ("GET", "HEAD", "OPTIONS")
        specs.append(HttpSpec(
            name=_tool_name(prefix, op_id), description=desc, method=method, url=server.rstrip("/") + path,
            arguments=args, headers=dict(template.headers), query=dict(template.query),
            timeout_s=template.timeout_s, retries=template.retries, max_response_bytes=template.max_response_bytes,
            retry_non_idempotent=template.retry_non_idempotent, mutates_state=mutates, policy=template.policy,
            transport=template.transport,
        ))
    return specs
