"""The store domain's API (a starlette ASGI app): stores near a place, opening hours, catalogue and stock,
distance and delivery time, orders. Each store-domain environment runs one in-process world of it; the
YAML-registry example (examples/store.yaml, served by ``python -m examples.store_api``) and the HTTP-tool tests
talk to it over loopback. ``keye_agent.store_api``, its old home, still imports.

Example::

    from keye_agent.tau.domains.store.api import create_app, serve_in_thread
    app = create_app()
    with serve_in_thread(app) as base_url:
        ...  # point examples/store.yaml at base_url (STORE_API_URL)
    app.state.store.snapshot()  # stock and orders after the run
"""

from .app import create_app, openapi_document
from .serving import serve_in_thread
from .state import DEFAULT_NOW, ApiError, StoreState

__all__ = ["DEFAULT_NOW", "ApiError", "StoreState", "create_app", "openapi_document", "serve_in_thread"]
