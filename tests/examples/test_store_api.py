"""The store-and-delivery API itself (keye_agent.tau.domains.store.api), over real HTTP on a loopback port, and
``python -m examples.store_api`` as a user starts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from keye_agent.tau.domains.store.api import StoreState, create_app, openapi_document, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def client():  # type: ignore[no-untyped-def]
    app = create_app(test_mode=True)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


def order(c: httpx.Client, store: str, items: dict[str, int], to: str = "Maple Street 12") -> httpx.Response:
    return c.post("/orders", json={"store_id": store, "items": [{"sku": k, "quantity": v} for k, v in items.items()],
                                   "deliver_to": to})


def test_stores_near_a_place_nearest_first(client: httpx.Client) -> None:
    r = client.get("/stores", params={"near": "maple street 12"})
    assert r.status_code == 200
    stores = r.json()["stores"]
    assert [s["id"] for s in stores] == ["s4", "s1", "s3", "s2", "s5"]
    assert [s["distance_km"] for s in stores] == sorted(s["distance_km"] for s in stores)
    assert {s["id"]: s["open_now"] for s in stores} == {"s4": False, "s1": True, "s3": True, "s2": True, "s5": False}
    r = client.get("/stores", params={"near": "Maple Street 12", "radius_km": 1, "open_now": "true"})
    assert r.json()["stores"] == []
    r = client.get("/stores", params={"near": "Mapel Stret 12"})
    assert r.status_code == 404 and "Maple Street 12" in r.json()["detail"]
    assert client.get("/stores").status_code == 422


def test_store_details_and_hours(client: httpx.Client) -> None:
    s = client.get("/stores/s4").json()["store"]
    assert s["open_now"] is False and s["hours"]["sat"] == "closed" and s["next_opening"] == "Monday 09:00"
    s = client.get("/stores/s3").json()["store"]
    assert s["open_now"] is True and s["hours"]["sun"] == "18:00-02:00" and s["next_opening"] is None
    assert client.get("/stores/nope").status_code == 404


def test_overnight_hours() -> None:
    st = StoreState(now=datetime(2026, 3, 15, 1, 30))  # Sunday 01:30: the tail of Saturday night's opening
    assert st.is_open("s3") and not st.is_open("s1")
    st = StoreState(now=datetime(2026, 3, 15, 2, 0))
    assert not st.is_open("s3")
    st = StoreState(now=datetime(2026, 3, 16, 9, 0))  # Monday morning
    assert st.is_open("s4") and not st.is_open("s5")


def test_catalogue_stock_and_distance(client: httpx.Client) -> None:
    products = client.get("/stores/s2/products", params={"category": "dairy"}).json()["products"]
    eggs = next(p for p in products if p["sku"] == "eggs-10")
    assert eggs["stock"] == 0 and eggs["in_stock"] is False
    assert client.get("/stores/s1/products", params={"q": "coffee"}).json()["products"][0]["stock"] == 3
    assert client.get("/stores/s1/products/oatmilk-1l").status_code == 404
    d = client.get("/distance", params={"from": "s1", "to": "Maple Street 12"}).json()
    assert d["distance_km"] == 1.41 and d["delivery_minutes"] == 20


def test_order_lifecycle(client: httpx.Client) -> None:
    r = order(client, "s1", {"eggs-10": 2, "coffee-500": 1})
    assert r.status_code == 201
    o = r.json()["order"]
    assert o["status"] == "confirmed" and o["total"] == round((2 * 3.29 + 8.99 + 2.99), 2) and o["eta"] == "19:50"
    store = client.app.state.store  # type: ignore[attr-defined]
    assert store.stock["s1"]["eggs-10"] == 4
    assert client.get(f"/orders/{o['id']}").json()["order"]["id"] == o["id"]
    r = client.post(f"/orders/{o['id']}/cancel")
    assert r.json()["order"]["status"] == "cancelled" and store.stock["s1"]["eggs-10"] == 6
    r = client.post(f"/orders/{o['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"] == "already_cancelled"
    assert client.get("/orders/o-999").status_code == 404


def test_order_refusals_say_what_to_do(client: httpx.Client) -> None:
    r = order(client, "s4", {"eggs-10": 1})
    assert r.status_code == 409 and r.json()["error"] == "store_closed" and "Monday 09:00" in r.json()["detail"]
    r = order(client, "s2", {"eggs-10": 1, "milk-1l": 1})
    body = r.json()
    assert r.status_code == 409 and body["error"] == "out_of_stock"
    assert body["items"] == [{"sku": "eggs-10", "requested": 1, "available": 0}]
    assert client.app.state.store.stock["s2"]["milk-1l"] == 30  # type: ignore[attr-defined] # nothing half-applied
    r = order(client, "s1", {"milk-1l": 1}, to="Airport")
    assert r.status_code == 422 and r.json()["error"] == "out_of_delivery_area"
    r = order(client, "s1", {"salmon-300": 1})
    assert r.status_code == 422 and r.json()["error"] == "unknown_product"
    r = client.post("/orders", json={"store_id": "s1", "items": [{"sku": "milk-1l", "quantity": 0}],
                                     "deliver_to": "Old Town Square"})
    assert r.status_code == 422 and r.json()["error"] == "bad_item"
    r = client.post("/orders", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "bad_json"
    assert client.post("/orders", json={"store_id": "s1"}).json()["error"] == "missing_field"


def test_api_token() -> None:
    with serve_in_thread(create_app(api_token="secret-token-1")) as base, httpx.Client(base_url=base) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/stores/s1").status_code == 401
        assert c.get("/stores/s1", headers={"Authorization": "Bearer secret-token-1"}).status_code == 200
        assert c.get("/stores/s1", headers={"X-API-Key": "secret-token-1"}).status_code == 200


def test_faults_only_in_test_mode(client: httpx.Client) -> None:
    assert client.get("/health", headers={"X-Fault": "503"}).status_code == 503
    assert client.get("/health", headers={"X-Fault": "nonsense"}).status_code == 400
    with serve_in_thread(create_app()) as base:
        assert httpx.get(base + "/health", headers={"X-Fault": "503"}).status_code == 200


def test_openapi_document_is_served(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc == openapi_document() and doc["openapi"].startswith("3.")
    ops = {op["operationId"] for item in doc["paths"].values() for k, op in item.items() if k != "parameters"}
    assert ops == {"searchPlaces", "findStores", "getStore", "listProducts", "getProduct", "getDistance",
                   "createOrder", "getOrder", "cancelOrder"}


def test_each_app_is_an_independent_world() -> None:
    a, b = create_app(), create_app()
    a.state.store.create_order("s1", [{"sku": "milk-1l", "quantity": 2}], "Old Town Square")
    assert a.state.store.stock["s1"]["milk-1l"] == 10 and b.state.store.stock["s1"]["milk-1l"] == 12
    assert list(b.state.store.snapshot()["orders"]) == []


def test_python_m_examples_store_api() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "examples.store_api", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"the server did not come up: {out}")
                time.sleep(0.1)
        assert r.json() == {"status": "ok", "now": "2026-03-14T19:30:00"}
        assert httpx.get(f"http://127.0.0.1:{port}/stores/s1").json()["store"]["open_now"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_old_import_path_still_works(tmp_path: Path) -> None:
    """keye_agent.store_api moved into the tau store domain; its old names, submodules and YAML references stay."""
    import keye_agent.store_api.data as old_data
    from keye_agent.store_api.app import create_app as old_create_app

    import keye_agent.store_api as old
    from keye_agent.tau.domains.store.api import data as new_data
    from keye_agent.tools.yaml_registry import load_registry

    assert old.create_app is create_app and old_create_app is create_app and old_data is new_data
    assert old.StoreState is StoreState and old.serve_in_thread is serve_in_thread
    f = tmp_path / "tools.yaml"
    f.write_text("version: 1\ntools:\n  - {kind: python, function: 'keye_agent.store_api.data:seed', name: seed_world,"
                 " description: A fresh world.}\n")
    assert load_registry(f).names == ["seed_world"]
