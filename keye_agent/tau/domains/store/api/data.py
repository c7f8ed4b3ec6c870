"""Seed data of the store API: places, stores with opening hours, and each store's catalogue with stock.

A small fictional town (coordinates near 48.14 N, 11.58 E). Fixed data, so tests, examples and simulations see the
same world; :func:`seed` returns fresh copies, so one simulation's orders never leak into another's.
"""

from __future__ import annotations

import copy
import math
from typing import Any

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

PLACES: list[dict[str, Any]] = [
    {"id": "p-central-station", "name": "Central Station", "lat": 48.1402, "lon": 11.5600},
    {"id": "p-old-town", "name": "Old Town Square", "lat": 48.1374, "lon": 11.5755},
    {"id": "p-university", "name": "University Campus", "lat": 48.1507, "lon": 11.5803},
    {"id": "p-riverside-park", "name": "Riverside Park", "lat": 48.1299, "lon": 11.5851},
    {"id": "p-harbour", "name": "Harbour Market", "lat": 48.1211, "lon": 11.5560},
    {"id": "p-north-hospital", "name": "North Hospital", "lat": 48.1702, "lon": 11.5705},
    {"id": "p-maple-12", "name": "Maple Street 12", "lat": 48.1331, "lon": 11.5907},
    {"id": "p-airport", "name": "Airport", "lat": 48.3538, "lon": 11.7861},
]

_EVERY_DAY = {d: "07:00-22:00" for d in DAYS}
_WEEKDAYS = {**{d: "09:00-18:00" for d in DAYS[:5]}, "sat": None, "sun": None}

STORES: list[dict[str, Any]] = [
    {"id": "s1", "name": "Corner Grocer Old Town", "lat": 48.1369, "lon": 11.5772, "delivery_radius_km": 6.0,
     "hours": dict(_EVERY_DAY), "phone": "+49 89 555 0101"},
    {"id": "s2", "name": "FreshMart Central", "lat": 48.1410, "lon": 11.5620, "delivery_radius_km": 8.0,
     "hours": {**{d: "08:00-20:00" for d in DAYS[:6]}, "sun": None}, "phone": "+49 89 555 0102"},
    {"id": "s3", "name": "Night Owl Market", "lat": 48.1488, "lon": 11.5790, "delivery_radius_km": 5.0,
     "hours": {d: "18:00-02:00" for d in DAYS}, "phone": "+49 89 555 0103"},
    {"id": "s4", "name": "Riverside Organics", "lat": 48.1312, "lon": 11.5880, "delivery_radius_km": 4.0,
     "hours": dict(_WEEKDAYS), "phone": "+49 89 555 0104"},
    {"id": "s5", "name": "Harbour Fish & Deli", "lat": 48.1215, "lon": 11.5571, "delivery_radius_km": 5.0,
     "hours": {**{d: "10:00-19:00" for d in DAYS[1:]}, "mon": None}, "phone": "+49 89 555 0105"},
]

# sku: (name, category, price in cents)
PRODUCTS: dict[str, tuple[str, str, int]] = {
    "milk-1l": ("Whole milk 1 l", "dairy", 119),
    "oatmilk-1l": ("Oat drink 1 l", "dairy", 189),
    "eggs-10": ("Free-range eggs, 10", "dairy", 329),
    "butter-250": ("Butter 250 g", "dairy", 239),
    "bread-rye": ("Rye bread 750 g", "bakery", 349),
    "croissant": ("Butter croissant", "bakery", 99),
    "apples-1kg": ("Apples 1 kg", "produce", 279),
    "bananas-1kg": ("Bananas 1 kg", "produce", 199),
    "tomatoes-500": ("Vine tomatoes 500 g", "produce", 259),
    "coffee-500": ("Coffee beans 500 g", "pantry", 899),
    "pasta-500": ("Spaghetti 500 g", "pantry", 149),
    "olive-oil": ("Olive oil 750 ml", "pantry", 749),
    "salmon-300": ("Smoked salmon 300 g", "fish", 1299),
    "shrimp-250": ("Prawns 250 g", "fish", 899),
    "chocolate": ("Dark chocolate 100 g", "snacks", 189),
}

# store -> sku -> stock; a sku missing here is not sold by that store
STOCK: dict[str, dict[str, int]] = {
    "s1": {"milk-1l": 12, "eggs-10": 6, "bread-rye": 4, "croissant": 20, "apples-1kg": 9, "bananas-1kg": 7,
           "coffee-500": 3, "pasta-500": 15, "chocolate": 10, "butter-250": 5},
    "s2": {"milk-1l": 30, "oatmilk-1l": 10, "eggs-10": 0, "butter-250": 8, "bread-rye": 6, "apples-1kg": 20,
           "tomatoes-500": 12, "coffee-500": 5, "pasta-500": 40, "olive-oil": 7, "chocolate": 25},
    "s3": {"milk-1l": 5, "eggs-10": 2, "croissant": 0, "coffee-500": 2, "pasta-500": 8, "chocolate": 30},
    "s4": {"oatmilk-1l": 14, "eggs-10": 9, "apples-1kg": 25, "bananas-1kg": 12, "tomatoes-500": 10,
           "bread-rye": 5, "olive-oil": 4},
    "s5": {"salmon-300": 4, "shrimp-250": 0, "olive-oil": 3, "bread-rye": 2},
}

PREP_MINUTES = 15
COURIER_KMH = 18.0
ROAD_FACTOR = 1.3  # streets are longer than the straight line
DELIVERY_FEE_CENTS = 299


def seed() -> dict[str, Any]:
    """A fresh, independent copy of the world: places, stores, products and stock."""
    return {
        "places": copy.deepcopy(PLACES),
        "stores": copy.deepcopy(STORES),
        "products": dict(PRODUCTS),
        "stock": copy.deepcopy(STOCK),
    }


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km."""
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def road_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return round(haversine_km(lat1, lon1, lat2, lon2) * ROAD_FACTOR, 2)


def delivery_minutes(km: float) -> int:
    return PREP_MINUTES + math.ceil(km / COURIER_KMH * 60)
