"""The store-and-delivery API as a starlette app: ``create_app()`` gives a fresh, independent world each call.

Routes (JSON in and out; errors are ``{"error": code, "detail": sentence}`` with a 4xx status):

    GET  /health
    GET  /places?q=                              search places by name
    GET  /stores?near=PLACE&radius_km=&open_now= stores near a place, nearest first
    GET  /stores/{store_id}                      details, opening hours, open now, next opening
    GET  /stores/{store_id}/products?q=&category=  catalogue with stock
    GET  /stores/{store_id}/products/{sku}       one product with stock
    GET  /distance?from=PLACE&to=PLACE           road distance and delivery time
    POST /orders                                 {store_id, items: [{sku, quantity}], deliver_to}
    GET  /orders/{order_id}
    POST /orders/{order_id}/cancel
    GET  /openapi.json                           an OpenAPI 3 description of the above
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FaultInjector
from .state import ApiError, StoreState

__all__ = ["create_app"]

Handler = Callable[[Request], Awaitable[Any]]


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 document of this API (server URL relative: "/")."""
    text = resources.files("keye_agent.tau.domains.store.api").joinpath("openapi.json").read_text(encoding="utf-8")
    return json.loads(text)


def _state(request: Request) -> StoreState:
    return request.app.state.store


def _float(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ApiError(422, "bad_parameter", f"{name} must be a number, got {raw!r}.") from None


def _bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ApiError(422, "bad_parameter", f"{name} must be true or false, got {raw!r}.")


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise ApiError(422, "missing_parameter", f"The query parameter {name!r} is required.")
    return value


def endpoint(fn: Callable[..., Any], status: int = 200, *, public: bool = False) -> Handler:
    async def handle(request: Request) -> Response:
        token = request.app.state.api_token
        if token is not None and not public:
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {token}" and request.headers.get("x-api-key") != token:
                return JSONResponse({"error": "unauthorized", "detail": "Missing or wrong API token."}, 401)
        try:
            body = fn(request) if not _wants_body(fn) else fn(request, await _json_body(request))
            return JSONResponse(body, status)
        except ApiError as e:
            return JSONResponse(e.body(), e.status)

    return handle


def _wants_body(fn: Callable[..., Any]) -> bool:
    return fn.__code__.co_argcount == 2


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "bad_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(422, "bad_body", "The request body must be a JSON object.")
    return data


def _create_order(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in ("store_id", "items", "deliver_to") if k not in body]
    if missing:
        raise ApiError(422, "missing_field", f"The order is missing {', '.join(missing)}.")
    if not isinstance(body["items"], list):
        raise ApiError(422, "bad_items", "items must be a list of {sku, quantity}.")
    items = [i if isinstance(i, dict) else {"sku": i} for i in body["items"]]
    return {"order": _state(request).create_order(str(body["store_id"]), items, str(body["deliver_to"]))}


def _routes() -> list[Route]:
    def p(r: Request, k: str) -> str:
        return r.path_params[k]

    return [
        Route("/health", endpoint(lambda r: {"status": "ok", "now": _state(r).now.isoformat()}, public=True)),
        Route("/places", endpoint(lambda r: {"places": _state(r).search_places(r.query_params.get("q"))})),
        Route("/stores", endpoint(lambda r: _state(r).stores_near(
            _required(r, "near"), _float(r, "radius_km", 5.0), _bool(r, "open_now")))),
        Route("/stores/{store_id}", endpoint(lambda r: {"store": _state(r).store_details(p(r, "store_id"))})),
        Route("/stores/{store_id}/products", endpoint(lambda r: {
            "store_id": p(r, "store_id"),
            "products": _state(r).catalogue(p(r, "store_id"), r.query_params.get("q"), r.query_params.get("category")),
        })),
        Route("/stores/{store_id}/products/{sku}",
              endpoint(lambda r: {"product": _state(r).product(p(r, "store_id"), p(r, "sku"))})),
        Route("/distance", endpoint(lambda r: _state(r).distance(_required(r, "from"), _required(r, "to")))),
        Route("/orders", endpoint(_create_order, 201), methods=["POST"]),
        Route("/orders/{order_id}", endpoint(lambda r: {"order": _state(r).order(p(r, "order_id"))})),
        Route("/orders/{order_id}/cancel", endpoint(lambda r: {"order": _state(r).cancel_order(p(r, "order_id"))}),
              methods=["POST"]),
        Route("/openapi.json", _openapi),
    ]


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


def create_app(*, now: datetime | None = None, api_token: str | None = None, test_mode: bool = False,
               state: StoreState | None = None) -> Starlette:
    """A fresh store API.

    ``now`` fixes the clock (default: Saturday 2026-03-14 19:30, see ``state.DEFAULT_NOW``); ``api_token`` makes
    every route but /health and /openapi.json demand ``Authorization: Bearer TOKEN`` or ``X-API-Key: TOKEN``;
    ``test_mode`` installs the ``X-Fault`` header fault injector (never in production). ``app.state.store`` is the
    :class:`StoreState`, for inspecting the world after a run.
    """
    middleware = [Middleware(FaultInjector)] if test_mode else []
    app = Starlette(routes=_routes(), middleware=middleware)
    app.state.store = state or StoreState(now=now)
    app.state.api_token = api_token
    return app
