"""The store API's state and rules, free of HTTP: lookups, opening hours, delivery estimates, orders.

Every refusal is an :class:`ApiError` with an HTTP status, a stable code and a sentence saying what to do, because
the caller is often a model that must recover from it (a closed store, an item out of stock).
"""

from __future__ import annotations

import difflib
import threading
from datetime import datetime, time, timedelta
from typing import Any

from . import data as D

__all__ = ["ApiError", "StoreState", "DEFAULT_NOW"]

DEFAULT_NOW = datetime(2026, 3, 14, 19, 30)  # a Saturday evening: some stores are closed, one closes soon
"""The fixed clock of a fresh state, so every run sees the same opening hours."""


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


def _parse_range(text: str) -> tuple[time, time]:
    a, b = text.split("-")
    return time.fromisoformat(a), time.fromisoformat(b)


def _open_in(hours: dict[str, str | None], day: int, t: time) -> bool:
    today, yesterday = hours.get(D.DAYS[day]), hours.get(D.DAYS[(day - 1) % 7])
    if today:
        start, end = _parse_range(today)
        if (start < end and start <= t < end) or (end <= start and t >= start):
            return True
    if yesterday:
        start, end = _parse_range(yesterday)
        if end <= start and t < end:  # the tail of last night's overnight opening
            return True
    return False


class StoreState:
    """One world: stock, orders and a clock. Thread-safe (uvicorn runs the app on one loop, tests may not)."""

    def __init__(self, now: datetime | None = None) -> None:
        world = D.seed()
        self.places: list[dict[str, Any]] = world["places"]
        self.stores: dict[str, dict[str, Any]] = {s["id"]: s for s in world["stores"]}
        self.products: dict[str, tuple[str, str, int]] = world["products"]
        self.stock: dict[str, dict[str, int]] = world["stock"]
        self.orders: dict[str, dict[str, Any]] = {}
        self.now = now or DEFAULT_NOW
        self._next_order = 1001
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        """The mutable part of the world (stock and orders), for checking the end state of a task."""
        with self._lock:
            return {"stock": {s: dict(v) for s, v in self.stock.items()},
                    "orders": {k: dict(v, items=[dict(i) for i in v["items"]]) for k, v in self.orders.items()}}

    # places and stores
    def place(self, ref: str) -> dict[str, Any]:
        """A place by id or name (case-insensitive); a store id also names its location."""
        key = ref.strip().lower()
        for p in self.places:
            if key in (p["id"], p["name"].lower()):
                return p
        if ref in self.stores:
            s = self.stores[ref]
            return {"id": s["id"], "name": s["name"], "lat": s["lat"], "lon": s["lon"]}
        names = [p["name"] for p in self.places]
        close = difflib.get_close_matches(ref, names, n=2, cutoff=0.4)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else " Search places first."
        raise ApiError(404, "unknown_place", f"No place named {ref!r}.{hint}")

    def search_places(self, q: str | None) -> list[dict[str, Any]]:
        if not q:
            return list(self.places)
        q = q.lower()
        return [p for p in self.places if q in p["name"].lower() or q in p["id"]]

    def store(self, store_id: str) -> dict[str, Any]:
        if store_id not in self.stores:
            raise ApiError(404, "unknown_store", f"No store {store_id!r}; known stores: {', '.join(self.stores)}. "
                           "Find stores near a place first.")
        return self.stores[store_id]

    def is_open(self, store_id: str, at: datetime | None = None) -> bool:
        at = at or self.now
        return _open_in(self.store(store_id)["hours"], at.weekday(), at.time())

    def next_opening(self, store_id: str) -> str | None:
        hours = self.store(store_id)["hours"]
        for offset in range(8):
            day = self.now + timedelta(days=offset)
            rng = hours.get(D.DAYS[day.weekday()])
            if not rng:
                continue
            start, _ = _parse_range(rng)
            when = datetime.combine(day.date(), start)
            if when > self.now:
                return when.strftime("%A %H:%M")
        return None

    def store_summary(self, store_id: str, near: dict[str, Any] | None = None) -> dict[str, Any]:
        s = self.store(store_id)
        today = s["hours"].get(D.DAYS[self.now.weekday()])
        out = {"id": s["id"], "name": s["name"], "open_now": self.is_open(store_id), "hours_today": today or "closed"}
        if near is not None:
            out["distance_km"] = D.road_km(near["lat"], near["lon"], s["lat"], s["lon"])
        return out

    def store_details(self, store_id: str) -> dict[str, Any]:
        s = self.store(store_id)
        open_now = self.is_open(store_id)
        return {**self.store_summary(store_id), "phone": s["phone"], "location": {"lat": s["lat"], "lon": s["lon"]},
                "hours": {d: s["hours"].get(d) or "closed" for d in D.DAYS},
                "delivery_radius_km": s["delivery_radius_km"],
                "next_opening": None if open_now else self.next_opening(store_id),
                "now": self.now.strftime("%A %Y-%m-%d %H:%M")}

    def stores_near(self, place_ref: str, radius_km: float = 5.0, open_now: bool | None = None) -> dict[str, Any]:
        near = self.place(place_ref)
        found = [self.store_summary(sid, near) for sid in self.stores]
        found = [s for s in found if s["distance_km"] <= radius_km and (open_now is None or s["open_now"] == open_now)]
        found.sort(key=lambda s: s["distance_km"])
        return {"near": near["name"], "radius_km": radius_km, "stores": found}

    # catalogue
    def _product(self, store_id: str, sku: str) -> dict[str, Any]:
        name, category, price = self.products[sku]
        stock = self.stock[store_id][sku]
        return {"sku": sku, "name": name, "category": category, "price": round(price / 100, 2), "stock": stock,
                "in_stock": stock > 0}

    def catalogue(self, store_id: str, q: str | None = None, category: str | None = None) -> list[dict[str, Any]]:
        self.store(store_id)
        items = [self._product(store_id, sku) for sku in self.stock[store_id]]
        if q:
            ql = q.lower()
            items = [i for i in items if ql in i["name"].lower() or ql in i["sku"]]
        if category:
            items = [i for i in items if i["category"] == category.lower()]
        return items

    def product(self, store_id: str, sku: str) -> dict[str, Any]:
        self.store(store_id)
        if sku not in self.stock[store_id]:
            sold = ", ".join(sorted(self.stock[store_id]))
            raise ApiError(404, "unknown_product", f"Store {store_id} does not sell {sku!r}; it sells: {sold}.")
        return self._product(store_id, sku)

    # delivery
    def distance(self, origin: str, destination: str) -> dict[str, Any]:
        a, b = self.place(origin), self.place(destination)
        km = D.road_km(a["lat"], a["lon"], b["lat"], b["lon"])
        return {"from": a["name"], "to": b["name"], "distance_km": km, "delivery_minutes": D.delivery_minutes(km)}

    # orders
    def create_order(self, store_id: str, items: list[dict[str, Any]], deliver_to: str) -> dict[str, Any]:
        with self._lock:
            s = self.store(store_id)
            dest = self.place(deliver_to)
            if not items:
                raise ApiError(422, "empty_order", "An order needs at least one item.")
            if not self.is_open(store_id):
                nxt = self.next_opening(store_id)
                raise ApiError(409, "store_closed", f"{s['name']} ({store_id}) is closed now"
                               + (f"; it opens {nxt}" if nxt else "") + ". Choose an open store.",
                               next_opening=nxt)
            km = D.road_km(s["lat"], s["lon"], dest["lat"], dest["lon"])
            if km > s["delivery_radius_km"]:
                raise ApiError(422, "out_of_delivery_area", f"{dest['name']} is {km} km from {s['name']}, beyond its "
                               f"delivery radius of {s['delivery_radius_km']} km. Choose a closer store.")
            wanted: dict[str, int] = {}
            for it in items:
                sku, qty = it.get("sku"), it.get("quantity", 1)
                if not isinstance(sku, str) or not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
                    raise ApiError(422, "bad_item", f"Each item needs a sku (string) and a quantity >= 1, got {it!r}.")
                wanted[sku] = wanted.get(sku, 0) + qty
            short = []
            for sku, qty in wanted.items():
                if sku not in self.stock[store_id]:
                    raise ApiError(422, "unknown_product", f"Store {store_id} does not sell {sku!r}. List its "
                                   "products to see what it sells.")
                if self.stock[store_id][sku] < qty:
                    short.append({"sku": sku, "requested": qty, "available": self.stock[store_id][sku]})
            if short:
                names = ", ".join(f"{x['sku']} (requested {x['requested']}, available {x['available']})" for x in short)
                raise ApiError(409, "out_of_stock", f"Not enough stock at {store_id}: {names}. Order less, drop the "
                               "item, or try another store.", items=short)
            lines = []
            for sku, qty in wanted.items():
                self.stock[store_id][sku] -= qty
                name, _, price = self.products[sku]
                lines.append({"sku": sku, "name": name, "quantity": qty, "unit_price": round(price / 100, 2)})
            subtotal = sum(self.products[sku][2] * qty for sku, qty in wanted.items())
            order_id = f"o-{self._next_order}"
            self._next_order += 1
            minutes = D.delivery_minutes(km)
            order = {"id": order_id, "store_id": store_id, "deliver_to": dest["name"], "items": lines,
                     "status": "confirmed", "subtotal": round(subtotal / 100, 2),
                     "delivery_fee": round(D.DELIVERY_FEE_CENTS / 100, 2),
                     "total": round((subtotal + D.DELIVERY_FEE_CENTS) / 100, 2), "distance_km": km,
                     "eta": (self.now + timedelta(minutes=minutes)).strftime("%H:%M"), "eta_minutes": minutes}
            self.orders[order_id] = order
            return dict(order)

    def order(self, order_id: str) -> dict[str, Any]:
        if order_id not in self.orders:
            raise ApiError(404, "unknown_order", f"No order {order_id!r}.")
        return dict(self.orders[order_id])

    def cancel_order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            order = self.orders.get(order_id)
            if order is None:
                raise ApiError(404, "unknown_order", f"No order {order_id!r}.")
            if order["status"] == "cancelled":
                raise ApiError(409, "already_cancelled", f"Order {order_id} is already cancelled.")
            for line in order["items"]:
                self.stock[order["store_id"]][line["sku"]] += line["quantity"]
            order["status"] = "cancelled"
            return dict(order)
