"""Writes the store domain's tasks.json from the task specs below.

Each spec gives the customer's scenario, the gold actions and which of them the API must refuse (the recovery
tasks). The figures the agent must tell the customer (order ids, totals, delivery times, opening times) are not
typed in: they are read from the API's answers to the gold actions, run here on a fresh store world, and the run
also checks that exactly the expected gold actions fail. Run it after changing a spec or the store API:

    .venv/bin/python -m keye_agent.tau.domains.store.build_tasks
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .toolkit import StoreToolkit

MAPLE, OLD_TOWN, CENTRAL, UNI = "Maple Street 12", "Old Town Square", "Central Station", "University Campus"
RIVERSIDE, HARBOUR, HOSPITAL, AIRPORT = "Riverside Park", "Harbour Market", "North Hospital", "Airport"
MONDAY_10, SUNDAY_NOON = "2026-03-16T10:00:00", "2026-03-15T12:00:00"
SUNDAY_1AM, TUESDAY_11 = "2026-03-15T01:00:00", "2026-03-17T11:00:00"


def A(name: str, **arguments: Any) -> tuple[str, dict[str, Any]]:
    return name, arguments


def items(**qty: int) -> list[dict[str, Any]]:
    return [{"sku": sku.replace("_", "-"), "quantity": n} for sku, n in qty.items()]


@dataclass
class Spec:
    id: str
    purpose: str
    instructions: str
    actions: list[tuple[str, dict[str, Any]]]
    fails: set[int] = field(default_factory=set)
    """Indices of gold actions the API refuses (the agent must recover from them)."""
    tell: list[tuple[int, str] | str] = field(default_factory=list)
    """What the agent must tell: (gold action index, field of its answer) or a fixed string."""
    clock: str | None = None
    setup: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    persona: str = "A busy customer who writes short, polite messages."


SPECS: list[Spec] = [
    Spec("eggs_from_corner_grocer", "A plain order from a named store.",
         f"You want 2 packs of free-range eggs from Corner Grocer Old Town (store s1), delivered to {MAPLE}. "
         "Ask for the order id and the total.",
         [A("get_product", store_id="s1", sku="eggs-10"),
          A("create_order", store_id="s1", items=items(eggs_10=2), deliver_to=MAPLE)],
         tell=[(1, "id"), (1, "total")]),
    Spec("oat_drink_nearest_open", "The nearest store is closed and others do not sell the item.",
         f"You live at {MAPLE} and want 2 cartons of oat drink (1 l) from the nearest store that is open now and "
         "sells it. You do not know the stores. Ask for the order id, total and delivery time.",
         [A("find_stores", near=MAPLE, open_now=True),
          A("list_products", store_id="s1", q="oat"), A("list_products", store_id="s3", q="oat"),
          A("list_products", store_id="s2", q="oat"),
          A("create_order", store_id="s2", items=items(oatmilk_1l=2), deliver_to=MAPLE)],
         tell=[(4, "id"), (4, "total"), (4, "eta")]),
    Spec("closed_organics_fallback", "The named store is closed; the order fails and goes to the nearest open store.",
         f"You want 2 kg of apples (two 1 kg bags) from Riverside Organics (s4), delivered to {RIVERSIDE}. If it "
         "cannot deliver now, you want to know when it opens next, and you accept the nearest open store instead.",
         [A("create_order", store_id="s4", items=items(apples_1kg=2), deliver_to=RIVERSIDE),
          A("get_store", store_id="s4"),
          A("find_stores", near=RIVERSIDE, open_now=True),
          A("get_product", store_id="s1", sku="apples-1kg"),
          A("create_order", store_id="s1", items=items(apples_1kg=2), deliver_to=RIVERSIDE)],
         fails={0}, tell=[(1, "next_opening"), (4, "id"), (4, "total")]),
    Spec("eggs_out_of_stock_fallback", "The named store has no stock; the next nearest open store serves it.",
         f"You want 1 pack of eggs from FreshMart Central (s2), delivered to {CENTRAL}. If FreshMart cannot, "
         "take the nearest open store that has eggs. Ask for the order id and total.",
         [A("create_order", store_id="s2", items=items(eggs_10=1), deliver_to=CENTRAL),
          A("find_stores", near=CENTRAL, open_now=True),
          A("get_product", store_id="s1", sku="eggs-10"),
          A("create_order", store_id="s1", items=items(eggs_10=1), deliver_to=CENTRAL)],
         fails={0}, tell=[(3, "id"), (3, "total")]),
    Spec("cancel_existing_order", "Cancel an order placed before the conversation.",
         "Earlier today you ordered milk, order o-1001. You no longer need it: ask the agent to cancel it and to "
         "confirm the refunded total.",
         [A("get_order", order_id="o-1001"), A("cancel_order", order_id="o-1001")],
         setup=[("place_order", {"store_id": "s1", "items": items(milk_1l=3), "deliver_to": OLD_TOWN})],
         tell=["o-1001", (1, "total"), "cancelled"]),
    Spec("change_coffee_quantity", "Orders cannot be changed: cancel and order again.",
         "You ordered 1 bag of coffee beans at Corner Grocer (order o-1001) for delivery to Old Town Square. You "
         "want 2 bags instead, from the same store and to the same address. Ask for the new order id and total.",
         [A("get_order", order_id="o-1001"), A("cancel_order", order_id="o-1001"),
          A("create_order", store_id="s1", items=items(coffee_500=2), deliver_to=OLD_TOWN)],
         setup=[("place_order", {"store_id": "s1", "items": items(coffee_500=1), "deliver_to": OLD_TOWN})],
         tell=[(2, "id"), (2, "total")]),
    Spec("fastest_chocolate", "Choose the store that delivers fastest.",
         f"You are at {UNI} and want 3 bars of dark chocolate from whichever open store delivers fastest. Ask when "
         "it will arrive and the total.",
         [A("find_stores", near=UNI, open_now=True), A("delivery_estimate", origin="s3", destination=UNI),
          A("get_product", store_id="s3", sku="chocolate"),
          A("create_order", store_id="s3", items=items(chocolate=3), deliver_to=UNI)],
         tell=[(3, "eta"), (3, "total")]),
    Spec("airport_out_of_area", "No store delivers to the airport; the customer's fallback address works.",
         f"You want 2 litres of whole milk (two 1 l cartons) from FreshMart Central (s2) delivered to the {AIRPORT}. "
         f"If that is impossible, ask how far the airport is from the store, then have it delivered to {CENTRAL} "
         "instead. Ask for the order id.",
         [A("create_order", store_id="s2", items=items(milk_1l=2), deliver_to=AIRPORT),
          A("delivery_estimate", origin="s2", destination=AIRPORT),
          A("create_order", store_id="s2", items=items(milk_1l=2), deliver_to=CENTRAL)],
         fails={0}, tell=[(1, "distance_km"), (2, "id")]),
    Spec("breakfast_basket", "A long order checked item by item (over ten calls).",
         f"You want a breakfast basket from Corner Grocer Old Town (s1) delivered to {OLD_TOWN}: 1 l of milk, 1 pack "
         "of eggs, 250 g of butter, 1 rye bread, 4 croissants, 1 bag of coffee beans, 1 kg of apples and 1 bar of "
         "chocolate. Ask the agent to check each item is in stock first. Ask for the order id and total.",
         [A("get_store", store_id="s1"),
          *[A("get_product", store_id="s1", sku=s) for s in ("milk-1l", "eggs-10", "butter-250", "bread-rye",
                                                              "croissant", "coffee-500", "apples-1kg", "chocolate")],
          A("delivery_estimate", origin="s1", destination=OLD_TOWN),
          A("create_order", store_id="s1", deliver_to=OLD_TOWN,
            items=items(milk_1l=1, eggs_10=1, butter_250=1, bread_rye=1, croissant=4, coffee_500=1, apples_1kg=1,
                        chocolate=1))],
         tell=[(10, "id"), (10, "total")]),
    Spec("split_over_two_stores", "No store has everything: the first order fails, the order is split (over ten "
         "calls).",
         f"You are at {CENTRAL} and want 2 packs of eggs, 1 bottle of olive oil and 1 pack of vine tomatoes, "
         "preferably all from FreshMart Central (s2). If it cannot serve everything, accept a split over the fewest "
         "stores. Ask for every order id and total, and check each order afterwards.",
         [A("find_stores", near=CENTRAL, open_now=True),
          A("get_product", store_id="s2", sku="eggs-10"), A("get_product", store_id="s2", sku="olive-oil"),
          A("get_product", store_id="s2", sku="tomatoes-500"),
          A("create_order", store_id="s2", items=items(eggs_10=2, olive_oil=1, tomatoes_500=1), deliver_to=CENTRAL),
          A("get_product", store_id="s1", sku="eggs-10"), A("list_products", store_id="s1", q="olive"),
          A("create_order", store_id="s2", items=items(olive_oil=1, tomatoes_500=1), deliver_to=CENTRAL),
          A("create_order", store_id="s1", items=items(eggs_10=2), deliver_to=CENTRAL),
          A("get_order", order_id="o-1001"), A("get_order", order_id="o-1002")],
         fails={4}, tell=[(7, "id"), (7, "total"), (8, "id"), (8, "total")]),
    Spec("ten_bags_of_coffee", "Stock is short everywhere: a failed order, then three orders (over ten calls).",
         f"You need 10 bags of coffee beans delivered to {CENTRAL} for an office party, from open stores only. "
         "You accept several orders if no store has 10. Ask for each order id.",
         [A("find_stores", near=CENTRAL, open_now=True),
          A("get_product", store_id="s2", sku="coffee-500"),
          A("create_order", store_id="s2", items=items(coffee_500=10), deliver_to=CENTRAL),
          A("get_product", store_id="s1", sku="coffee-500"), A("get_product", store_id="s3", sku="coffee-500"),
          A("create_order", store_id="s2", items=items(coffee_500=5), deliver_to=CENTRAL),
          A("create_order", store_id="s1", items=items(coffee_500=3), deliver_to=CENTRAL),
          A("create_order", store_id="s3", items=items(coffee_500=2), deliver_to=CENTRAL),
          A("get_order", order_id="o-1001"), A("get_order", order_id="o-1002"), A("get_order", order_id="o-1003")],
         fails={2}, tell=[(5, "id"), (6, "id"), (7, "id")]),
    Spec("late_night_pasta", "After midnight only the night store is open.",
         f"It is 1 am. You are at {UNI} and want 2 packs of spaghetti from any store open now. Ask for the total.",
         [A("find_stores", near=UNI, open_now=True), A("get_product", store_id="s3", sku="pasta-500"),
          A("create_order", store_id="s3", items=items(pasta_500=2), deliver_to=UNI)],
         clock=SUNDAY_1AM, tell=[(2, "total"), (2, "id")]),
    Spec("monday_organics", "On a weekday morning the organic store is open.",
         f"You want 2 kg of bananas (two 1 kg bunches) and 1 pack of vine tomatoes from Riverside Organics (s4), "
         f"delivered to {MAPLE}. Ask for the order id and total.",
         [A("get_store", store_id="s4"),
          A("create_order", store_id="s4", items=items(bananas_1kg=2, tomatoes_500=1), deliver_to=MAPLE)],
         clock=MONDAY_10, tell=[(1, "id"), (1, "total")]),
    Spec("sunday_olive_oil", "The named store is closed on Sundays; another open store sells the item.",
         f"It is Sunday noon. You want 1 bottle of olive oil from FreshMart Central (s2) delivered to {CENTRAL}; if "
         "it is closed, any open store that has it is fine. Ask for the order id and total.",
         [A("create_order", store_id="s2", items=items(olive_oil=1), deliver_to=CENTRAL),
          A("find_stores", near=CENTRAL, open_now=True), A("list_products", store_id="s1", q="olive"),
          A("get_product", store_id="s5", sku="olive-oil"),
          A("create_order", store_id="s5", items=items(olive_oil=1), deliver_to=CENTRAL)],
         clock=SUNDAY_NOON, fails={0}, tell=[(4, "id"), (4, "total")]),
    Spec("harbour_salmon", "A weekday order from the fish shop.",
         f"You want 2 packs of smoked salmon from Harbour Fish & Deli (s5) delivered to {HARBOUR}. Ask for the "
         "total and the delivery time.",
         [A("get_product", store_id="s5", sku="salmon-300"),
          A("create_order", store_id="s5", items=items(salmon_300=2), deliver_to=HARBOUR)],
         clock=TUESDAY_11, tell=[(1, "total"), (1, "eta")]),
    Spec("no_prawns_take_salmon", "The only store selling the item has none; the customer's second choice.",
         f"You want 1 pack of prawns delivered to {HARBOUR}. If no store has prawns, you take 1 pack of smoked "
         "salmon from the same shop instead. Ask for the order id.",
         [A("create_order", store_id="s5", items=items(shrimp_250=1), deliver_to=HARBOUR),
          A("get_product", store_id="s5", sku="shrimp-250"),
          A("create_order", store_id="s5", items=items(salmon_300=1), deliver_to=HARBOUR)],
         clock=TUESDAY_11, fails={0}, tell=[(2, "id"), (2, "total")]),
    Spec("cancel_second_order", "Two orders exist; only the one asked for is cancelled.",
         "You placed two orders today: o-1001 (milk) and o-1002 (chocolate). Cancel only the chocolate order "
         "o-1002 and ask for its refunded total.",
         [A("get_order", order_id="o-1002"), A("cancel_order", order_id="o-1002")],
         setup=[("place_order", {"store_id": "s1", "items": items(milk_1l=1), "deliver_to": OLD_TOWN}),
                ("place_order", {"store_id": "s3", "items": items(chocolate=4), "deliver_to": UNI})],
         tell=["o-1002", (1, "total")]),
    Spec("already_cancelled_then_reorder", "Cancelling twice fails; the customer then orders again.",
         f"You think order o-1001 (butter) is still open and want to cancel it. If it was already cancelled, you "
         f"want a new order of 2 packs of butter from Corner Grocer (s1) to {OLD_TOWN}. Ask for the new order id.",
         [A("cancel_order", order_id="o-1001"), A("get_order", order_id="o-1001"),
          A("create_order", store_id="s1", items=items(butter_250=2), deliver_to=OLD_TOWN)],
         setup=[("place_order", {"store_id": "s1", "items": items(butter_250=1), "deliver_to": OLD_TOWN}),
                ("cancel_existing_order", {"order_id": "o-1001"})],
         fails={0}, tell=[(2, "id"), (2, "total")]),
    Spec("croissants_on_budget", "The largest order within a budget, delivery fee included.",
         f"You have exactly 10 euros, delivery fee included, and want as many butter croissants as that buys from "
         f"Corner Grocer (s1), delivered to {OLD_TOWN}. Ask for the total.",
         [A("get_product", store_id="s1", sku="croissant"),
          A("create_order", store_id="s1", items=items(croissant=7), deliver_to=OLD_TOWN)],
         tell=[(1, "total"), "7"]),
    Spec("hospital_fastest_milk", "Compare delivery times of every open store in range.",
         f"You work at {HOSPITAL} and want 1 carton of whole milk from the open store that delivers fastest there. "
         "Ask for the delivery time and the order id.",
         [A("find_stores", near=HOSPITAL, radius_km=10, open_now=True),
          A("delivery_estimate", origin="s3", destination=HOSPITAL),
          A("delivery_estimate", origin="s2", destination=HOSPITAL),
          A("delivery_estimate", origin="s1", destination=HOSPITAL),
          A("get_product", store_id="s3", sku="milk-1l"),
          A("create_order", store_id="s3", items=items(milk_1l=1), deliver_to=HOSPITAL)],
         tell=[(5, "eta"), (5, "id")]),
    Spec("add_butter_to_bread_order", "Add an item: place, cancel, and order both.",
         f"You want 1 rye bread from Corner Grocer (s1) delivered to {OLD_TOWN}. Once it is ordered, you remember "
         "you also need 1 pack of butter: you want both in one order. Ask for the final order id and total.",
         [A("create_order", store_id="s1", items=items(bread_rye=1), deliver_to=OLD_TOWN),
          A("cancel_order", order_id="o-1001"),
          A("create_order", store_id="s1", items=items(bread_rye=1, butter_250=1), deliver_to=OLD_TOWN)],
         tell=[(2, "id"), (2, "total")]),
    Spec("misspelled_address", "An unknown address fails; a place search finds the right one.",
         "You want 1 kg of bananas from Corner Grocer (s1) delivered to 'Maple St 12' (that is how you write your "
         "address; if the agent asks, it is the Maple Street place). Ask for the order id.",
         [A("create_order", store_id="s1", items=items(bananas_1kg=1), deliver_to="Maple St 12"),
          A("search_places", q="maple"),
          A("create_order", store_id="s1", items=items(bananas_1kg=1), deliver_to=MAPLE)],
         fails={0}, tell=[(2, "id"), (2, "total")]),
    Spec("party_supplies_split", "A large order short on one item: it fails, and the rest is split (over ten "
         "calls).",
         f"You host a party at {OLD_TOWN} and want 15 croissants, 15 l of whole milk and 5 bars of chocolate, "
         "preferably all from Corner Grocer (s1). If it lacks something, order what it has there and the rest from "
         "the nearest other open store. Ask for every order id and total.",
         [A("get_store", store_id="s1"),
          A("get_product", store_id="s1", sku="croissant"), A("get_product", store_id="s1", sku="milk-1l"),
          A("get_product", store_id="s1", sku="chocolate"),
          A("create_order", store_id="s1", items=items(croissant=15, milk_1l=15, chocolate=5), deliver_to=OLD_TOWN),
          A("find_stores", near=OLD_TOWN, open_now=True),
          A("get_product", store_id="s2", sku="milk-1l"),
          A("create_order", store_id="s1", items=items(croissant=15, milk_1l=12, chocolate=5), deliver_to=OLD_TOWN),
          A("create_order", store_id="s2", items=items(milk_1l=3), deliver_to=OLD_TOWN),
          A("get_order", order_id="o-1001"), A("get_order", order_id="o-1002")],
         fails={4}, tell=[(7, "id"), (7, "total"), (8, "id"), (8, "total")]),
]


def _field(value: Any, name: str) -> str:
    v = value.get(name) if isinstance(value, dict) else None
    if v is None:
        raise ValueError(f"the answer has no {name!r}: {value!r}")
    return str(v)


async def build_task(spec: Spec) -> dict[str, Any]:
    kit = StoreToolkit()
    init_actions = ([{"env_type": "assistant", "func_name": "set_clock", "arguments": {"now": spec.clock}}]
                    if spec.clock else [])
    init_actions += [{"env_type": "assistant", "func_name": f, "arguments": a} for f, a in spec.setup]
    try:
        for ia in init_actions:
            getattr(kit, ia["func_name"])(**ia["arguments"])
        answers: list[Any] = []
        failed: set[int] = set()
        for i, (name, args) in enumerate(spec.actions):
            try:
                answers.append(await kit.invoke(name, args))
            except Exception as e:  # noqa: BLE001 - which gold actions fail is checked against the spec
                answers.append(e)
                failed.add(i)
        if failed != spec.fails:
            raise SystemExit(f"{spec.id}: gold actions {sorted(failed)} failed, the spec expects {sorted(spec.fails)}:"
                             f" {[str(answers[i]) for i in sorted(failed)]}")
    finally:
        await kit.aclose()
    tell = [t if isinstance(t, str) else _field(answers[t[0]], t[1]) for t in spec.tell]
    if any("," in t for t in tell):
        raise SystemExit(f"{spec.id}: communicate_info must not contain commas (the check strips them from messages)")
    task: dict[str, Any] = {
        "id": spec.id,
        "description": {"purpose": spec.purpose},
        "user_scenario": {"persona": spec.persona, "instructions": spec.instructions},
        "evaluation_criteria": {
            "actions": [{"action_id": f"{spec.id}_{i}", "name": n, "arguments": a}
                        for i, (n, a) in enumerate(spec.actions)],
            "communicate_info": tell,
            "reward_basis": ["DB", "COMMUNICATE"],
        },
    }
    if init_actions:
        task["initial_state"] = {"initialization_actions": init_actions}
    return task


def main() -> None:
    here = Path(__file__).resolve().parent
    tasks = [asyncio.run(build_task(s)) for s in SPECS]
    ids = [t["id"] for t in tasks]
    if len(set(ids)) != len(ids):
        raise SystemExit("task ids repeat")
    (here / "tasks.json").write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (here / "split_tasks.json").write_text(json.dumps({"base": ids}, indent=1) + "\n", encoding="utf-8")
    long_ones = [s.id for s in SPECS if len(s.actions) > 10 and s.fails]
    print(f"wrote {len(tasks)} tasks; over ten calls with a failed one: {', '.join(long_ones)}")


if __name__ == "__main__":
    main()
