"""HTTP API tools: a request template filled from the model's arguments, sent through the network guard.

Failures become :class:`ToolExecutionError` with a message the model can act on. Transient ones (connection
refused, 429, 5xx, timeouts) are marked ``transient`` so :class:`ToolRegistry` retries them with backoff, honouring
``Retry-After``. For methods that change state (POST, PATCH) only faults where the request surely was not applied
(it could not connect, 429, 503) are retried, unless the spec says otherwise: a timed-out order must not be placed
twice.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from keye_agent.errors import ToolExecutionError, shorten
from keye_agent.retry import parse_retry_after

from .base import Tool
from .decoding import ACCEPT_ENCODING, DecodingError, read_decoded
from .jsonpath import JsonPath
from .netguard import NetPolicy, guarded_async_client

__all__ = ["ArgSpec", "HttpSpec", "make_http_tool", "parse_retry_after", "placeholders"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_SCHEMA_KEYS = ("type", "description", "enum", "items", "properties", "minimum", "maximum", "minLength",
                "maxLength", "minItems", "maxItems", "pattern", "format", "default")
_DETAIL_CHARS = 600


def placeholders(template: str) -> list[str]:
    """The ``{name}`` placeholders of a URL template, in order."""
    return _PLACEHOLDER.findall(template)


@dataclass
class ArgSpec:
    """One argument: its JSON Schema, where it goes (path/query/header/body) and its name on the wire."""

    schema: dict[str, Any]
    location: str
    wire_name: str
    required: bool


@dataclass
class HttpSpec:
    """Everything needed to build one HTTP tool (the YAML loader and the OpenAPI converter both produce these)."""

    name: str
    description: str
    method: str
    url: str
    """Full URL template, e.g. ``http://127.0.0.1:8765/stores/{store_id}``."""
    arguments: dict[str, ArgSpec] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    """Fixed query parameters (an API key given as a query parameter goes here)."""
    timeout_s: float = 30.0
    retries: int = 2
    max_response_bytes: int = 1_000_000
    select: JsonPath | None = None
    retry_non_idempotent: bool = False
    mutates_state: bool | None = None
    requires_approval: bool | None = None
    policy: NetPolicy = field(default_factory=NetPolicy)
    transport: httpx.AsyncBaseTransport | None = None
    """Send through this transport instead of the network (in-process ASGI apps); skips the network guard."""

    def parameters_schema(self) -> dict[str, Any]:
        props = {name: {k: v for k, v in a.schema.items() if k in _SCHEMA_KEYS} for name, a in self.arguments.items()}
        required = [name for name, a in self.arguments.items() if a.required]
        schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema


def _wire(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _path_segment(value: Any) -> str:
    """A path argument as one segment: every reserved character percent-encoded, and ``.``/``..`` too, which a
    client (httpx included) would otherwise resolve as dot segments and send to another path of the host."""
    text = quote(_wire(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def _detail(body: bytes, content_type: str) -> str:
    """The useful part of an error body: the API's own error fields when it sent JSON, else the text, redacted
    and then shortened (a secret past the cut must not leave its first characters behind)."""
    text = body[: _DETAIL_CHARS * 4].decode("utf-8", "replace").strip()
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            picked = {k: data[k] for k in ("error", "code", "detail", "message", "errors", "hint") if k in data}
            text = json.dumps(picked or data, ensure_ascii=False)
    return shorten(text, _DETAIL_CHARS)


_ADVICE = {
    400: "the API rejected the arguments; fix them and call again",
    401: "the API refused the credentials; the tool's auth setting (an environment variable) is wrong, and "
         "changing the arguments will not help",
    403: "the API refused access to this resource; changing the arguments will not help unless you picked the "
         "wrong resource",
    404: "not found; check the identifiers (list or search for valid ones first)",
    405: "the API does not allow this method here; the tool definition is wrong",
    409: "the request conflicts with the current state; read the detail, then change the request",
    410: "this resource is gone; pick another one",
    413: "the request is too large; send less",
    422: "the API could not process the arguments; fix them and call again",
    429: "rate limited; wait before calling again",
}


class _Call:
    """One invocation: request building, sending with a size cap, and mapping the outcome."""

    def __init__(self, spec: HttpSpec) -> None:
        self.spec = spec
        self.method = spec.method.upper()
        self.safe_to_retry = self.method in _IDEMPOTENT or spec.retry_non_idempotent

    def request_parts(self, args: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str], Any]:
        spec = self.spec
        path_values: dict[str, str] = {}
        query: dict[str, Any] = dict(spec.query)
        headers = dict(spec.headers)
        body: dict[str, Any] = {}
        raw_body: Any = None
        # a default declared for an argument is sent when the model leaves the argument out
        defaults = {n: a.schema["default"] for n, a in spec.arguments.items() if "default" in a.schema}
        for name, value in {**defaults, **args}.items():
            a = spec.arguments.get(name)
            if a is None or value is None:
                continue
            if a.location == "path":
                path_values[a.wire_name] = _path_segment(value)
            elif a.location == "query":
                query[a.wire_name] = [_wire(v) for v in value] if isinstance(value, list) else _wire(value)
            elif a.location == "header":
                headers[a.wire_name] = _wire(value)
            elif a.wire_name == "":  # the argument is the whole JSON body (OpenAPI bodies that are not objects)
                raw_body = value
            else:
                body[a.wire_name] = value
        url = _PLACEHOLDER.sub(lambda m: path_values.get(m.group(1), m.group(0)), spec.url)
        if "?" in url:
            # httpx replaces a URL's query string with `params`: keep the template's fixed parameters explicitly
            url, _, fixed = url.partition("?")
            query = {**dict(parse_qsl(fixed, keep_blank_values=True)), **query}
        missing = placeholders(url)
        if missing:
            raise ToolExecutionError(
                f"missing path argument(s) {', '.join(missing)} for {spec.name!r}", tool=spec.name
            )
        if raw_body is not None:
            return url, query, headers, raw_body
        has_body = any(a.location == "body" for a in spec.arguments.values())
        return url, query, headers, body if body or (has_body and self.method in ("POST", "PUT", "PATCH")) else None

    def fail(self, message: str, *, transient: bool, retry_after: float | None = None,
             unsure_applied: bool = False) -> ToolExecutionError:
        if unsure_applied and not self.safe_to_retry:
            message += (f"; the {self.method} may or may not have been applied, so it was not retried: check the "
                        "current state (e.g. read the resource) before calling again")
            transient = False
        return ToolExecutionError(message, tool=self.spec.name, transient=transient, retry_after=retry_after)

    def client(self) -> httpx.AsyncClient:
        spec = self.spec
        timeout = httpx.Timeout(spec.timeout_s)
        headers = {"Accept-Encoding": ACCEPT_ENCODING}  # only what read_decoded can decode under its cap
        if spec.transport is not None:
            return httpx.AsyncClient(transport=spec.transport, timeout=timeout, follow_redirects=True,
                                     max_redirects=spec.policy.max_redirects, headers=headers)
        return guarded_async_client(spec.policy, timeout=timeout, follow_redirects=True, headers=headers)

    async def run(self, args: dict[str, Any]) -> Any:
        url, query, headers, body = self.request_parts(args)
        where = f"{self.method} {urlsplit(url).path or '/'}"
        try:
            async with asyncio.timeout(self.spec.timeout_s), self.client() as client:
                async with client.stream(self.method, url, params=query, headers=headers, json=body) as resp:
                    data = await self._read_capped(resp, where)
        except TimeoutError:
            raise self.fail(f"{where} did not answer within {self.spec.timeout_s:g} s", transient=True,
                            unsure_applied=True) from None
        except httpx.TimeoutException as e:
            connect = isinstance(e, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise self.fail(f"{where} timed out after {self.spec.timeout_s:g} s ({type(e).__name__})",
                            transient=True, unsure_applied=not connect) from None
        except httpx.ConnectError as e:
            raise self.fail(f"{where}: cannot connect to the API ({e or 'connection refused'})", transient=True) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            raise self.fail(f"{where}: the connection was dropped ({type(e).__name__}: {e})", transient=True,
                            unsure_applied=True) from None
        except httpx.TooManyRedirects:
            raise self.fail(f"{where}: too many redirects (limit {self.spec.policy.max_redirects})",
                            transient=False) from None
        status, content_type, raw, retry_after = data
        if status >= 400:
            raise self._status_error(where, status, content_type, raw, retry_after)
        return self._result(where, status, content_type, raw)

    async def _read_capped(self, resp: httpx.Response, where: str) -> tuple[int, str, bytes, float | None]:
        cap = self.spec.max_response_bytes
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap and resp.status_code < 400:
            raise self.fail(
                f"{where} returned {int(declared):,} bytes, over this tool's limit of {cap:,}; ask for less "
                "(a filter, a smaller page or limit argument)", transient=False)
        try:
            body, over = await read_decoded(resp, cap)
        except DecodingError as e:
            raise self.fail(f"{where}: {e}", transient=False) from None
        if over and resp.status_code < 400:  # an error page's start is enough for the message
            raise self.fail(
                f"{where} returned more than {cap:,} bytes (decoded), over this tool's limit; ask for less "
                "(a filter, a smaller page or limit argument)", transient=False)
        return (resp.status_code, resp.headers.get("content-type", ""), body,
                parse_retry_after(resp.headers.get("retry-after")))

    def _status_error(self, where: str, status: int, ctype: str, raw: bytes, retry_after: float | None
                      ) -> ToolExecutionError:
        reason = httpx.codes.get_reason_phrase(status)
        detail = _detail(raw, ctype)
        head = f"{where} failed with {status} {reason}" + (f": {detail}" if detail else "")
        if status == 429:
            wait = f" (the API asked to wait {retry_after:g} s)" if retry_after is not None else ""
            return self.fail(f"{head}; {_ADVICE[429]}{wait}", transient=True, retry_after=retry_after)
        if status >= 500:
            # a 503 means the server did not take the request on; other 5xx may have half-applied it
            return self.fail(f"{head}; the API failed on its side", transient=True, retry_after=retry_after,
                             unsure_applied=status != 503)
        advice = _ADVICE.get(status, "the API refused the request")
        return self.fail(f"{head}; {advice}", transient=False)

    def _result(self, where: str, status: int, ctype: str, raw: bytes) -> Any:
        if not raw:
            return f"done ({status} {httpx.codes.get_reason_phrase(status)}, no content)"
        if "json" in ctype:
            try:
                data = json.loads(raw)
            except ValueError as e:
                shown = shorten(raw[:4096].decode("utf-8", "replace"), 120, marker="")
                raise self.fail(
                    f"{where} returned malformed JSON ({e}); it starts with {shown!r}. The API is broken or "
                    "overloaded; calling again may help", transient=False) from None
            if self.spec.select is None:
                return data
            try:
                return self.spec.select.select(data)
            except KeyError as e:
                raise self.fail(f"{where}: the response has no {self.spec.select.expr!r} ({e.args[0]})",
                                transient=False) from None
        text = raw.decode("utf-8", "replace")
        return text


def make_http_tool(spec: HttpSpec) -> Tool:
    """Build the :class:`Tool` for ``spec``."""
    call = _Call(spec)

    async def run_http(**args: Any) -> Any:
        return await call.run(args)

    mutates = spec.mutates_state if spec.mutates_state is not None else call.method not in ("GET", "HEAD", "OPTIONS")
    return Tool(
        name=spec.name,
        description=spec.description,
        parameters=spec.parameters_schema(),
        fn=run_http,
        # the request carries its own deadline; this outer one only catches a stuck event loop
        timeout_s=spec.timeout_s + 5.0,
        retries=spec.retries,
        max_retry_wait_s=spec.timeout_s,  # the tool's timeout as the user set it, not the margin above
        mutates_state=mutates,
        requires_approval=spec.requires_approval,
        metadata={"kind": "http", "method": call.method, "url": spec.url},
    )
