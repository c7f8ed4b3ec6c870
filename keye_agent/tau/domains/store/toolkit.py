"""The store domain's toolkit: the YAML tools of ``tools.yaml`` acting on one in-process store API per toolkit
(a fresh :func:`keye_agent.tau.domains.store.api.create_app` world), through :class:`~keye_agent.tau.AsgiToolkit`."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from typing import Any

from keye_agent.errors import KeyeAgentError
from keye_agent.tau.asgi_toolkit import AsgiToolkit
from keye_agent.tau.toolkit import deep_merge

from .api.app import create_app

TOOLS_YAML = resources.files("keye_agent.tau.domains.store").joinpath("tools.yaml")


class StoreToolkit(AsgiToolkit):
    """Tools over one store API world. ``db`` is the world's :class:`StoreState`; its mutable part (clock, stock,
    orders) is what is hashed and compared."""

    def __init__(self, now: datetime | None = None) -> None:
        super().__init__(str(TOOLS_YAML), create_app(now=now), dump=lambda app: self._canonical(),
                         state_of=lambda app: app.state.store)

    # ---- helpers for initialization actions and env assertions (not tools) ---------------------------------

    def set_clock(self, now: str) -> str:
        """Move the world's clock, e.g. "2026-03-16T10:00" (a Monday morning)."""
        self.db.now = datetime.fromisoformat(now)
        return self.db.now.isoformat()

    def place_order(self, store_id: str, items: list[dict[str, Any]], deliver_to: str) -> dict[str, Any]:
        """An order that exists before the conversation starts."""
        return self.db.create_order(store_id, items, deliver_to)

    def cancel_existing_order(self, order_id: str) -> dict[str, Any]:
        return self.db.cancel_order(order_id)

    def assert_order_status(self, order_id: str, expected_status: str) -> bool:
        return self.db.orders.get(order_id, {}).get("status") == expected_status

    def assert_stock(self, store_id: str, sku: str, expected: int) -> bool:
        return self.db.stock.get(store_id, {}).get(sku) == expected

    def assert_number_of_orders(self, expected_number: int) -> bool:
        return len(self.db.orders) == expected_number

    # ---- the database --------------------------------------------------------------------------------------

    def _raw(self) -> dict[str, Any]:
        return {"now": self.db.now.isoformat(), **self.db.snapshot()}

    def _canonical(self) -> Any:
        """The world's mutable part in canonical form: orders as a list sorted by content, each order's items by
        sku, order ids left out. So the outcome is compared, not the sequence that produced it: two orders placed
        in the other order (and so numbered the other way round) give the same state."""
        raw = self._raw()
        orders = []
        for o in raw["orders"].values():
            o = {k: v for k, v in o.items() if k != "id"}
            o["items"] = sorted(o["items"], key=lambda i: i["sku"])
            orders.append(o)
        orders.sort(key=lambda o: json.dumps(o, sort_keys=True))
        return {"now": raw["now"], "stock": raw["stock"], "orders": orders}

    def update_db(self, data: dict[str, Any] | None) -> None:
        merged = deep_merge(self._raw(), data or {})
        unknown = sorted(set(merged) - {"now", "stock", "orders"})
        if unknown:
            raise KeyeAgentError(f"store initialization data has unknown keys {unknown}",
                                 hint="the store's data is now, stock and orders")
        self.db.now = datetime.fromisoformat(merged["now"])
        self.db.stock = merged["stock"]
        self.db.orders = merged["orders"]
        numbers = [int(k.split("-")[-1]) for k in self.db.orders if k.split("-")[-1].isdigit()]
        # the next order id follows the highest existing one; StoreState keeps the counter private
        self.db._next_order = max([1000, *numbers]) + 1
