"""The old home of the store domain's API, kept so that existing imports work: the code lives in
:mod:`keye_agent.tau.domains.store.api`, and ``keye_agent.store_api.app`` (``.data``, ``.faults``, ``.serving``,
``.state``) are the very modules there, so YAML references such as ``keye_agent.store_api.data:road_km`` resolve.
"""

from __future__ import annotations

import importlib
import sys

from keye_agent.tau.domains.store.api import (
    DEFAULT_NOW,
    ApiError,
    StoreState,
    create_app,
    openapi_document,
    serve_in_thread,
)

__all__ = ["DEFAULT_NOW", "ApiError", "StoreState", "create_app", "openapi_document", "serve_in_thread"]

for _name in ("app", "data", "faults", "serving", "state"):
    sys.modules[f"{__name__}.{_name}"] = importlib.import_module(f"keye_agent.tau.domains.store.api.{_name}")
