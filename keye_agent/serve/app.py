"""The Starlette app of ``keye-agent serve``: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``
over one model backend.

    from keye_agent.backends import load_model
    from keye_agent.serve import ServeConfig, create_app

    app = create_app(load_model("keye:tiny", random_weights=True), ServeConfig(max_queue=16))

Concurrent requests are concurrent ``astream`` calls on the one backend: a local backend serves them one at a time
under its lock; a batching backend runs them together. Every refusal is OpenAI's error object with a status (see
:mod:`keye_agent.serve.request` for what is checked); a bad request never disturbs the others.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keye_agent.errors import RequestError
from keye_agent.types import ModelBackend

from .auth import check_bearer
from .generation import EventStream, as_request_error, whole
from .limits import Admission, read_body
from .request import parse_chat_request
from .response import Completion, error_body, internal_error

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """How the server admits and answers requests."""

    model_name: str | None = None
    """The name clients ask for (``model`` in a request, the id in /v1/models); None: the backend's name."""
    max_queue: int = 64
    """Most requests in flight at once, generating or waiting for the model; more get 429 with Retry-After."""
    retry_after_s: float = 1.0
    """The Retry-After of a 429."""
    max_body_bytes: int = 32 * 2**20
    """Largest request body (inline images make bodies large); larger ones get 413."""
    default_max_tokens: int = 4096
    """Tokens an answer may have when the request sets neither max_completion_tokens nor max_tokens (a local
    backend also stops at its context window)."""
    api_key: str | None = None
    """The bearer key every /v1 request must carry; None: no key (loopback use)."""


def create_app(backend: ModelBackend, config: ServeConfig | None = None) -> Starlette:
    """The ASGI app serving ``backend``. ``app.state.admission`` counts requests in flight."""
    cfg = config or ServeConfig()
    name = cfg.model_name or backend.name
    admission = Admission(cfg.max_queue, cfg.retry_after_s)
    started = int(time.time())

    def authorize(request: Request) -> None:
        if cfg.api_key is not None:
            check_bearer(request.headers.get("authorization"), cfg.api_key)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": name, "active": admission.active,
                             "max_queue": admission.max_queue, "peak": admission.peak, "served": admission.served,
                             "refused": admission.refused})

    async def models(request: Request) -> Response:
        authorize(request)
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": started, "owned_by": "keye-agent",
             "max_model_len": backend.context_window}]})

    async def chat(request: Request) -> Response:
        authorize(request)
        raw = await read_body(request.stream(), request.headers.get("content-length"), cfg.max_body_bytes)
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise RequestError(f"the request body is not valid JSON: {e}", code="invalid_json") from None
        req = parse_chat_request(body, default_max_tokens=cfg.default_max_tokens)
        if req.model != name:
            raise RequestError(f"the model {req.model!r} is not served here; this server serves {name!r}",
                               status=404, param="model", code="model_not_found")
        ticket = admission.admit()
        completion = Completion(name)
        if req.stream:
            try:
                return await EventStream.start(backend, req, completion, ticket)
            except BaseException:
                ticket.release()
                raise
        try:
            answer = await whole(backend, req, request.receive)
        except RequestError:
            raise
        except Exception as e:  # noqa: BLE001 - mapped to the status that says whose fault it was
            raise as_request_error(e) from e
        finally:
            ticket.release()
        if answer is None:  # the client is gone: nobody reads this
            return Response(status_code=499)
        return JSONResponse(completion.whole(*answer))

    async def on_request_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        (log.warning if exc.status >= 500 else log.info)("%s %s: %d %s", request.method, request.url.path,
                                                         exc.status, exc)
        headers = {"Retry-After": f"{exc.retry_after:g}"} if exc.retry_after is not None else None
        return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        what = {404: f"no route {request.url.path}; the API is at /v1/chat/completions and /v1/models",
                405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return await on_request_error(request, RequestError(what, status=exc.status_code))

    async def on_bug(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return await on_request_error(request, internal_error(exc))

    handlers: dict[Any, Any] = {RequestError: on_request_error, HTTPException: on_http_error, Exception: on_bug}
    app = Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ], exception_handlers=handlers)
    app.state.admission = admission
    app.state.model_name = name
    return app
