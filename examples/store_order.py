"""An agent completes a delivery order through the store API, using the tools of examples/store.yaml.

The order needs more than ten calls and cannot succeed on the first try: the nearest store is closed, and the one
store that sells everything is out of one item, so the agent has to read the errors and split the order.

    python -m examples.store_order --model openai:MODEL --base-url http://localhost:8000/v1   # any OpenAI-compatible server
    python -m examples.store_order --model scripted      # a fixed, rule-based policy: shows the mechanics, not a model

The store API is started in-process on a free loopback port unless --api-url points at one already running
(``python -m examples.store_api``). ``--model`` goes through ``keye_agent.cli.models.resolve_model`` when the CLI
provides it; without it, ``openai:NAME`` (with --base-url) and ``scripted`` are understood here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Generator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from keye_agent.agent import Agent
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tau.domains.store.api import create_app, serve_in_thread
from keye_agent.tools.registry import ToolRegistry
from keye_agent.tools.yaml_registry import load_registry
from keye_agent.types import AssistantTurn, Message, ToolCall

REGISTRY = Path(__file__).with_name("store.yaml")
PLACE = "Maple Street 12"
WANTED = {"eggs-10": 2, "oatmilk-1l": 1, "coffee-500": 1}
TASK = (
    f"Get these delivered to {PLACE} as soon as possible: 2 x free-range eggs (sku eggs-10), 1 x oat drink "
    "(oatmilk-1l) and 1 x coffee beans (coffee-500). Prefer one order from a nearby store; if no open store can "
    "supply everything, split the order across stores. Finish with the order ids, what each contains, the totals "
    "and the delivery times."
)
INSTRUCTIONS = (
    "You are a shopping assistant with tools for a store-and-delivery API. Use the tools to find stores, check "
    "opening hours and stock, and place orders. When a call fails, read the error: it says what to change. Never "
    "invent order ids or prices: report only what the tools returned."
)

Results = list[tuple[bool, str]]


def _call(n: int, name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"call_{n}_{name}", name=name, arguments=arguments)


def _items(skus: dict[str, int]) -> list[dict[str, Any]]:
    return [{"sku": s, "quantity": q} for s, q in skus.items()]


def _plan(place: str, wanted: dict[str, int]) -> Generator[list[ToolCall] | str, Results, None]:
    """A fixed shopping procedure that reacts to what the tools return (the scripted stand-in for a model).

    It first tries the nearest store without checking it (and learns it is closed), then picks the nearest open
    store that sells everything, and splits the order when that store turns out to lack stock.
    """
    n = iter(range(1, 1000))
    (ok, text), = yield [_call(next(n), "find_stores", near=place)]
    stores = json.loads(text)["stores"]
    nearest = stores[0]["id"]
    (ok, text), = yield [_call(next(n), "create_order", store_id=nearest, items=_items(wanted), deliver_to=place)]
    if ok:
        orders = [json.loads(text)["id"]]
    else:
        if "store_closed" in text:
            yield [_call(next(n), "get_store", store_id=nearest)]
        open_ids = [s["id"] for s in stores if s["open_now"] and s["id"] != nearest]
        listed = yield [_call(next(n), "list_products", store_id=s) for s in open_ids]
        catalogue = {s: {p["sku"]: p for p in json.loads(t)}
                     for s, (good, t) in zip(open_ids, listed, strict=True) if good}
        full = next(s for s in open_ids if all(sku in catalogue.get(s, {}) for sku in wanted))
        (ok, text), = yield [_call(next(n), "create_order", store_id=full, items=_items(wanted), deliver_to=place)]
        orders = []
        if ok:
            orders.append(json.loads(text)["id"])
        else:
            short = {m.group(1) for m in re.finditer(r"([\w-]+) \(requested \d+, available \d+\)", text)}
            rest = {s: q for s, q in wanted.items() if s not in short}
            if rest:
                (ok, text), = yield [_call(next(n), "create_order", store_id=full, items=_items(rest), deliver_to=place)]
                if ok:
                    orders.append(json.loads(text)["id"])
            for sku in sorted(short):
                other = next(s for s in open_ids if s != full and catalogue.get(s, {}).get(sku, {}).get("stock", 0)
                             >= wanted[sku])
                yield [_call(next(n), "get_product", store_id=other, sku=sku),
                       _call(next(n), "delivery_estimate", origin=other, destination=place)]
                (ok, text), = yield [_call(next(n), "create_order", store_id=other, items=_items({sku: wanted[sku]}),
                                           deliver_to=place)]
                if ok:
                    orders.append(json.loads(text)["id"])
    details = yield [_call(next(n), "get_order", order_id=o) for o in orders]
    lines = []
    for good, text in details:
        if not good:
            continue
        o = json.loads(text)
        items = ", ".join(f"{i['quantity']} x {i['name']}" for i in o["items"])
        lines.append(f"{o['id']} from store {o['store_id']}: {items}; total {o['total']:.2f} EUR, arriving "
                     f"{o['eta']} ({o['eta_minutes']} min)")
    yield "Placed " + str(len(lines)) + " order(s): " + "; ".join(lines) + "."


class ScriptedShopper:
    """Drives :func:`_plan` as a ScriptedBackend script item: each turn feeds it the latest tool results."""

    def __init__(self, place: str = PLACE, wanted: dict[str, int] | None = None) -> None:
        self._gen = _plan(place, dict(wanted or WANTED))
        self._started = False

    def __call__(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None) -> AssistantTurn:
        if not self._started:
            self._started = True
            step = next(self._gen)
        else:
            results: Results = []
            for m in reversed(messages):
                if m.role != "tool":
                    break
                results.append((not m.text.startswith("Error"), m.text))
            step = self._gen.send(list(reversed(results)))
        if isinstance(step, str):
            return AssistantTurn(tool_calls=[ToolCall(id="call_final", name="final_answer", arguments={"answer": step})])
        return AssistantTurn(tool_calls=step)


def scripted_backend() -> ScriptedBackend:
    shopper = ScriptedShopper()
    return ScriptedBackend([shopper] * 40, name="scripted-shopper")


def build_backend(spec: str, base_url: str | None) -> Any:
    if spec == "scripted":
        return scripted_backend()
    try:
        from keye_agent.cli.models import resolve_model  # the CLI's model resolver, when installed
    except ImportError:
        resolve_model = None
    if resolve_model is not None:
        return resolve_model(spec, base_url=base_url)
    if spec.startswith("openai:"):
        from keye_agent.backends.openai import OpenAIBackend

        if not base_url:
            raise SystemExit("--model openai:NAME needs --base-url (the OpenAI-compatible server's /v1 URL)")
        return OpenAIBackend(spec.split(":", 1)[1], base_url=base_url)
    raise SystemExit(f"unknown --model {spec!r}: use openai:NAME with --base-url, or scripted")


def run_order(model: Any, api_url: str, *, max_steps: int = 30, registry: ToolRegistry | None = None) -> Any:
    """Run the ordering task with ``model`` against the store API at ``api_url``; returns the RunResult."""
    tools = registry or load_registry(REGISTRY, env={"STORE_API_URL": api_url})
    return Agent(model, tools, INSTRUCTIONS, max_steps=max_steps).run(TASK)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.store_order", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="openai:NAME (with --base-url), scripted, or any spec the CLI knows")
    ap.add_argument("--base-url", default=None, help="the model server's URL (OpenAI-compatible)")
    ap.add_argument("--api-url", default=None, help="a running store API (default: start one in-process)")
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    model = build_backend(args.model, args.base_url)
    with ExitStack() as stack:
        app = None
        api_url = args.api_url
        if api_url is None:
            app = create_app()
            api_url = stack.enter_context(serve_in_thread(app))
        result = run_order(model, api_url, max_steps=args.max_steps)
        calls = [(r.name, r.ok, r.error) for step in result.trajectory.steps for r in step.tool_results]
        orders = app.state.store.snapshot()["orders"] if app is not None else None
    if args.json:
        print(json.dumps({"status": result.status, "final_answer": result.final_answer, "steps": result.steps,
                          "tool_calls": [{"name": n, "ok": ok, "error": e} for n, ok, e in calls],
                          "orders": orders}, indent=2))
    else:
        print(f"model: {getattr(model, 'name', args.model)}  status: {result.status}  steps: {result.steps}  "
              f"tool calls: {len(calls)} ({sum(not ok for _, ok, _ in calls)} failed)")
        for name, ok, err in calls:
            print(f"  {'ok  ' if ok else 'FAIL'} {name}" + (f": {err[:110]}" if err else ""))
        print("answer:", result.final_answer)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
