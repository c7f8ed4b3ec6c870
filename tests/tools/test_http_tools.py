"""HTTP tools from YAML, against the real store API on a loopback port (uvicorn in a thread).

Faults are injected by the server itself (test mode, ``X-Fault`` header): a 500 then success, a 429 with
Retry-After, a timeout, a dropped connection, malformed JSON, a 10 MB body. Transient faults are retried by the
registry, the rest come back as one clear error, and nothing hangs.
"""

from __future__ import annotations

import asyncio
import socket
import textwrap
from pathlib import Path

import pytest

from keye_agent.errors import ToolExecutionError, redact
from keye_agent.tau.domains.store.api import create_app, serve_in_thread
from keye_agent.tools.yaml_registry import load_registry
from keye_agent.types import ToolCall

TOKEN = "tok-3c1a9f8e77d2"


@pytest.fixture(scope="module")
def api():  # type: ignore[no-untyped-def]
    app = create_app(test_mode=True)
    with serve_in_thread(app) as base:
        yield base, app


@pytest.fixture(scope="module")
def secured_api():  # type: ignore[no-untyped-def]
    with serve_in_thread(create_app(api_token=TOKEN)) as base:
        yield base


def _registry(tmp_path: Path, body: str, base: str, env: dict[str, str] | None = None, name: str = "reg.yaml"):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return load_registry(path, env={"API": base, **(env or {})}, backoff_base_s=0.01, backoff_max_s=0.05)


HEAD = """\
    version: 1
    network: {allow_loopback: true}
    defaults: {base_url: "${API}", timeout_s: 5, retries: 2}
    tools:
"""


def _tool(name: str, *, method: str = "GET", path: str = "/stores?near=Harbour Market", fault: str | None = None,
          extra: str = "") -> str:
    if "?" in path:
        path, _, q = path.partition("?")
        key, _, value = q.partition("=")
        args = f"\n        arguments: {{{key}: {{type: string, description: d, default: {value!r}}}}}"
    else:
        args = ""
    headers = f'\n        headers: {{X-Fault: "{fault}"}}' if fault else ""
    return f"""\
      - name: {name}
        kind: http
        description: test tool {name}
        method: {method}
        path: {path}{headers}{args}{extra}
"""


def _call(registry, name: str, **arguments):  # type: ignore[no-untyped-def]
    return registry.dispatch_sync([ToolCall(id="c1", name=name, arguments=arguments)])[0]


def test_get_with_query_path_and_select(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + """\
      - name: find_stores
        kind: http
        description: stores near a place
        path: /stores
        arguments:
          near: {type: string, description: place, required: true}
          open_now: {type: boolean, description: only open ones}
        response: {select: "$.stores[*].id"}
      - name: hours
        kind: http
        description: weekly hours
        path: /stores/{store_id}
        arguments:
          store_id: {type: string, description: id, in: path}
        response: {select: "$.store.hours.sat"}
    """, base)
    r = _call(reg, "find_stores", near="Maple Street 12", open_now=True)
    assert r.ok, r.error
    assert r.content == '["s1", "s3", "s2"]'
    r = _call(reg, "hours", store_id="s4")
    assert r.ok and r.content == "closed"
    schema = reg.get("find_stores").parameters
    assert schema["required"] == ["near"] and schema["additionalProperties"] is False


def test_wire_names_and_json_body(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, app = api
    reg = _registry(tmp_path, HEAD + """\
      - name: distance
        kind: http
        description: distance
        path: /distance
        arguments:
          origin: {type: string, description: from, name: from, required: true}
          destination: {type: string, description: to, name: to, required: true}
      - name: order
        kind: http
        description: order
        method: POST
        path: /orders
        arguments:
          store_id: {type: string, description: store}
          items: {type: array, description: items, items: {type: object}}
          deliver_to: {type: string, description: where}
        response: {select: "$.order.id"}
    """, base)
    r = _call(reg, "distance", origin="s1", destination="Old Town Square")
    assert r.ok and '"distance_km"' in r.content
    r = _call(reg, "order", store_id="s1", items=[{"sku": "pasta-500", "quantity": 2}], deliver_to="Old Town Square")
    assert r.ok, r.error
    order_id = r.content.strip('"')
    assert app.state.store.order(order_id)["items"][0]["quantity"] == 2
    assert reg.get("order").mutates_state is True and reg.get("distance").mutates_state is False


def test_fixed_query_in_url_template_is_kept(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + f"""\
      - name: open_near
        kind: http
        description: open stores near a place
        url: "{base}/stores?open_now=true&radius_km=3"
        arguments: {{near: {{type: string, description: place, required: true}}}}
        response: {{select: "$.stores[*].id"}}
    """, base)
    r = _call(reg, "open_near", near="Maple Street 12")
    assert r.ok and r.content == '["s1", "s3", "s2"]'


def test_header_argument(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An argument sent as a header: the fault header itself, so the server's reaction proves where it went."""
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("h", path="/stores", extra="""
        retries: 0
        arguments:
          near: {type: string, description: place, default: Harbour Market}
          fault: {type: string, description: fault spec, in: header, name: X-Fault}"""), base)
    assert _call(reg, "h").ok
    r = _call(reg, "h", fault="503")
    assert not r.ok and "503 Service Unavailable" in r.error


def test_500_then_success_is_retried(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("flaky", fault="500;times=1;id=t500"), base)
    r = _call(reg, "flaky")
    assert r.ok, r.error
    assert r.attempts == 2


def test_429_with_retry_after_is_honoured(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("limited", fault="429;times=1;retry_after=0.2;id=t429"), base)
    # the error the tool raises carries the server's Retry-After for the registry's backoff
    t = reg.get("limited")
    with pytest.raises(ToolExecutionError) as ei:
        asyncio.run(t.fn())
    assert ei.value.transient and ei.value.retry_after == pytest.approx(0.2)
    assert "429 Too Many Requests" in str(ei.value) and "wait 0.2 s" in str(ei.value)
    assert reg._retrier(t).next_wait(ei.value) == pytest.approx(0.2)  # the wait is what the server asked for
    # the next request passes (times=1): through the registry it is one attempt
    assert _call(reg, "limited").ok


def test_429_then_success_through_registry(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("limited2", fault="429;times=2;retry_after=0.05;id=t429b"), base)
    r = _call(reg, "limited2")
    assert r.ok and r.attempts == 3


def test_persistent_5xx_gives_up_with_clear_error(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("down", fault="503;id=t503"), base)
    r = _call(reg, "down")
    assert not r.ok and r.attempts == 3
    assert "GET /stores failed with 503 Service Unavailable" in r.error and "after 3 attempts" in r.error


def test_timeout_is_retried_then_reported(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("slow", fault="timeout;delay=2;id=tslow", extra="""
        timeout_s: 0.3
        retries: 1"""), base)
    r = _call(reg, "slow")
    assert not r.ok and r.attempts == 2
    assert "0.3 s" in r.error and ("timed out" in r.error or "did not answer" in r.error)


def test_timeout_on_post_is_not_retried(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A POST that timed out may have been applied: retrying could place an order twice."""
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("slow_post", method="POST", path="/orders", fault="timeout;delay=2;id=tp",
                                           extra="\n        timeout_s: 0.3"), base)
    r = _call(reg, "slow_post")
    assert not r.ok and r.attempts == 1
    assert "may or may not have been applied" in r.error


def test_connection_dropped_then_success(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("reset", fault="reset;times=1;id=treset"), base)
    r = _call(reg, "reset")
    assert r.ok and r.attempts == 2


def test_connection_dropped_on_post_not_retried(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("reset_post", method="POST", path="/orders", fault="reset;id=tresetp"),
                    base)
    r = _call(reg, "reset_post")
    assert not r.ok and r.attempts == 1
    assert "connection was dropped" in r.error and "may or may not" in r.error


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reg = _registry(tmp_path, HEAD + _tool("nobody"), f"http://127.0.0.1:{port}")
    r = _call(reg, "nobody")
    assert not r.ok and r.attempts == 3
    assert "cannot connect to the API" in r.error


def test_malformed_json(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("broken", fault="bad_json;id=tbad"), base)
    r = _call(reg, "broken")
    assert not r.ok and r.attempts == 1
    assert "malformed JSON" in r.error and '{"stores"' in r.error


def test_10mb_response_is_capped(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("huge", fault="huge;mb=10;id=thuge",
                                           extra="\n        max_response_bytes: 1000000"), base)
    r = _call(reg, "huge")
    assert not r.ok and r.attempts == 1
    assert "more than 1,000,000 bytes" in r.error and "ask for less" in r.error


def test_client_errors_are_actionable(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + """\
      - name: get_store
        kind: http
        description: store
        path: /stores/{store_id}
        arguments:
          store_id: {type: string, description: id, in: path}
      - name: order
        kind: http
        description: order
        method: POST
        path: /orders
        arguments:
          store_id: {type: string, description: store}
          items: {type: array, description: items}
          deliver_to: {type: string, description: where}
    """, base)
    r = _call(reg, "get_store", store_id="s9")
    assert not r.ok and r.attempts == 1
    assert "404 Not Found" in r.error and "known stores: s1" in r.error and "check the identifiers" in r.error
    r = _call(reg, "get_store", store_id="s1/../../orders")  # path values are escaped, not traversed
    assert not r.ok and "404" in r.error
    r = _call(reg, "order", store_id="s1", items=[{"sku": "milk-1l", "quantity": 1}], deliver_to="Airport")
    assert not r.ok and "422" in r.error and "out_of_delivery_area" in r.error and "fix them" in r.error
    r = _call(reg, "order", store_id="s4", items=[{"sku": "eggs-10", "quantity": 1}], deliver_to="Maple Street 12")
    assert not r.ok and "409 Conflict" in r.error and "store_closed" in r.error and "Monday 09:00" in r.error


def test_bearer_and_api_key_auth_from_env(secured_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = secured_api
    body = HEAD + """\
      - name: bearer
        kind: http
        description: stores
        path: /stores
        auth: {type: bearer, token_env: STORE_TOKEN}
        arguments: {near: {type: string, description: p, default: Harbour Market}}
      - name: keyed
        kind: http
        description: stores
        path: /stores
        auth: {type: api_key, key_env: STORE_TOKEN, header: X-API-Key}
        arguments: {near: {type: string, description: p, default: Harbour Market}}
      - name: anonymous
        kind: http
        description: stores
        path: /stores
        retries: 0
        arguments: {near: {type: string, description: p, default: Harbour Market}}
    """
    reg = _registry(tmp_path, body, base, env={"STORE_TOKEN": TOKEN})
    assert _call(reg, "bearer").ok and _call(reg, "keyed").ok
    r = _call(reg, "anonymous")
    assert not r.ok and "401" in r.error and "credentials" in r.error
    wrong = _registry(tmp_path, body, base, env={"STORE_TOKEN": "wrong-token-value"}, name="wrong.yaml")
    r = _call(wrong, "bearer")
    assert not r.ok and "401" in r.error and r.attempts == 1
    # the credential is registered as a secret: redacted wherever text is built from it
    assert TOKEN not in redact(f"Authorization: Bearer {TOKEN}")


def test_tools_run_concurrently_without_interference(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    reg = _registry(tmp_path, HEAD + _tool("a", path="/stores?near=Airport") + _tool("b", fault="500;times=1;id=tc"),
                    base)
    results = reg.dispatch_sync([ToolCall(id=str(i), name="ab"[i % 2], arguments={}) for i in range(6)])
    assert all(r.ok for r in results), [r.error for r in results]
