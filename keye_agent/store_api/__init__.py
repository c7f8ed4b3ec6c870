"""A store-and-delivery API (starlette ASGI app): stores near a place, opening hours, catalogue and stock,
distance and delivery time, orders. It backs the YAML-registry example and the TAU runner's simulations."""

from .serving import serve_in_thread

__all__ = ["serve_in_thread"]
