"""Loading YAML registries: includes, ${ENV} substitution, defaults, secrets, and the python / builtin / openapi
kinds. Calls go to the real store API on a loopback port."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator

from keye_agent.errors import ConfigError, redact
from keye_agent.tau.domains.store.api import create_app, serve_in_thread
from keye_agent.tools import ToolRegistry
from keye_agent.tools.yaml_registry import load_registry, registry_json_schema, validate_registry_file
from keye_agent.types import ToolCall

ROOT = Path(__file__).resolve().parents[2]
STORE_YAML = ROOT / "examples" / "store.yaml"
OPENAPI = ROOT / "keye_agent" / "tau" / "domains" / "store" / "api" / "openapi.json"


@pytest.fixture(scope="module")
def api():  # type: ignore[no-untyped-def]
    app = create_app()
    with serve_in_thread(app) as base:
        yield base, app


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def call(reg: ToolRegistry, name: str, **arguments):  # type: ignore[no-untyped-def]
    return reg.dispatch_sync([ToolCall(id="c", name=name, arguments=arguments)])[0]


def test_example_registry_is_valid_and_matches_the_shipped_schema() -> None:
    schema = registry_json_schema()
    Draft202012Validator.check_schema(schema)
    # an editor validates the raw YAML with the schema alone: the example must pass that too
    errors = list(Draft202012Validator(schema).iter_errors(yaml.safe_load(STORE_YAML.read_text())))
    assert errors == []
    assert validate_registry_file(STORE_YAML, env={"STORE_API_URL": "http://127.0.0.1:8765"}) == []
    reg = load_registry(STORE_YAML, env={})
    assert len(reg) == 9 and "create_order" in reg
    assert reg.get("create_order").mutates_state and not reg.get("find_stores").mutates_state
    assert reg.get("get_store").metadata["url"] == "http://127.0.0.1:8765/stores/{store_id}"


def test_validate_reports_every_schema_problem(tmp_path: Path) -> None:
    p = write(tmp_path, "r.yaml", """\
        version: 1
        tools:
          - {name: a, kind: http, description: d, path: /x, methd: GET}
          - {name: b, kind: pyton, function: "m:f"}
    """)
    problems = validate_registry_file(p)
    assert len(problems) == 2
    assert ":3:" in problems[0] and "did you mean 'method'" in problems[0]
    assert ":4:" in problems[1] and "did you mean 'python'" in problems[1]
    with pytest.raises(ConfigError, match=r"and 1 more problem"):
        load_registry(p)


def test_include_defaults_and_overrides(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    write(tmp_path, "parts/stores.yaml", """\
        version: 1
        defaults: {timeout_s: 7, headers: {X-Part: part}}
        tools:
          - name: get_store
            kind: http
            description: store details
            path: /stores/{store_id}
            arguments: {store_id: {type: string, description: id}}
            response: {select: "$.store.name"}
          - name: get_store_fast
            kind: http
            description: store details
            path: /stores/{store_id}
            timeout_s: 2
            retries: 0
            arguments: {store_id: {type: string, description: id}}
    """)
    main = write(tmp_path, "main.yaml", """\
        version: 1
        include: [parts/stores.yaml]
        network: {allow_loopback: true}
        defaults: {base_url: "${API}", retries: 4, headers: {X-Main: main}}
        tools:
          - name: find_stores
            kind: http
            description: stores
            path: /stores
            arguments: {near: {type: string, description: place, required: true}}
    """)
    reg = load_registry(main, env={"API": base})
    assert sorted(reg.names) == ["find_stores", "get_store", "get_store_fast"]
    inc = reg.get("get_store")
    # the included file inherits the includer's defaults and overrides some of them
    assert inc.retries == 4 and inc.timeout_s == 7 + 5.0
    fast = reg.get("get_store_fast")
    assert fast.retries == 0 and fast.timeout_s == 2 + 5.0
    assert reg.get("find_stores").timeout_s == 30 + 5.0
    assert call(reg, "get_store", store_id="s1").content == "Corner Grocer Old Town"
    # a store id placeholder without `in:` is a path argument, and path arguments are required
    assert inc.parameters["required"] == ["store_id"]


def test_env_substitution_forms(tmp_path: Path) -> None:
    p = write(tmp_path, "r.yaml", """\
        version: 1
        network: {allow_loopback: true}
        defaults:
          base_url: ${HOST_URL:-http://127.0.0.1:9}/v${API_VERSION:-1}
          timeout_s: ${TIMEOUT:-2.5}
          retries: ${RETRIES}
          headers: {X-Literal: "$${NOT_A_VAR}", X-Empty: "${EMPTY:-fallback}"}
        tools:
          - {name: t, kind: http, description: d, path: /x}
    """)
    reg = load_registry(p, env={"RETRIES": "1", "EMPTY": ""})
    t = reg.get("t")
    assert t.metadata["url"] == "http://127.0.0.1:9/v1/x"
    assert t.timeout_s == 2.5 + 5.0 and t.retries == 1  # unquoted ${...} read as numbers once expanded
    reg = load_registry(p, env={"RETRIES": "0", "HOST_URL": "http://127.0.0.1:10", "API_VERSION": "2"})
    assert reg.get("t").metadata["url"] == "http://127.0.0.1:10/v2/x"


def test_secrets_are_registered_and_redacted(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    p = write(tmp_path, "r.yaml", """\
        version: 1
        secrets: [PARTNER_ID]
        network: {allow_loopback: true}
        defaults:
          base_url: ${API}
          headers: {X-Session: "${SESSION_VALUE}"}
        tools:
          - name: t
            kind: http
            description: d
            path: /stores
            auth: {type: api_key, key_env: STORE_KEY, query: key}
            arguments: {partner: {type: string, description: p, default: "${PARTNER_ID}"}}
    """)
    env = {"API": base, "SESSION_VALUE": "sess-9f8e7d6c5b", "STORE_KEY": "k-1234567890", "PARTNER_ID": "partner-55661"}
    reg = load_registry(p, env=env)
    r = call(reg, "t")  # the store API rejects the call (no 'near'): the error must not echo any secret
    assert not r.ok
    text = r.model_dump_json()
    for secret in env.values():
        if secret != base:
            assert secret not in text
            assert redact(f"value={secret}") == "value=***"


def test_python_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "my_units.py", '''\
        """Test helper module (written by the test)."""


        def km_to_miles(km: float) -> float:
            """Convert kilometres to miles.

            Args:
                km: Distance in kilometres.
            """
            return round(km * 0.621371, 3)


        def shout(text):
            """Upper-case the text."""
            return text.upper()
    ''')
    monkeypatch.syspath_prepend(str(tmp_path))
    p = write(tmp_path, "r.yaml", """\
        version: 1
        tools:
          - kind: python
            function: my_units:km_to_miles
          - kind: python
            name: shout
            function: my_units:shout
            description: Upper-case a text.
            parameters:
              type: object
              properties: {text: {type: string, description: what to shout}}
              required: [text]
            timeout_s: 3
    """)
    reg = load_registry(p)
    assert reg.get("km_to_miles").parameters["properties"]["km"]["type"] == "number"
    assert call(reg, "km_to_miles", km=10).content == "6.214"
    assert call(reg, "shout", text="hi").content == "HI"
    assert reg.get("shout").timeout_s == 3
    bad = call(reg, "shout", text=3)
    assert not bad.ok and bad.error_type == "ToolValidationError"


def test_builtin_tool_through_an_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real entry point in the ``keye_agent.tools`` group, from a distribution the test puts on sys.path."""
    write(tmp_path, "keye_test_builtins.py", '''\
        from keye_agent.tools import Tool


        def make_echo(prefix: str = "") -> Tool:
            return Tool(name="echo", description="Echo a text.", fn=lambda text: prefix + text,
                        parameters={"type": "object", "properties": {"text": {"type": "string"}},
                                    "required": ["text"]})
    ''')
    dist = tmp_path / "keye_test_builtins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: keye-test-builtins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[keye_agent.tools]\necho = keye_test_builtins:make_echo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = write(tmp_path, "r.yaml", """\
        version: 1
        tools:
          - kind: builtin
            builtin: echo
            options: {prefix: "> "}
          - kind: builtin
            builtin: echo
            name: echo_again
            description: Echo a text, again.
            retries: 0
    """)
    reg = load_registry(p)
    assert call(reg, "echo", text="hello").content == "> hello"
    assert call(reg, "echo_again", text="x").content == "x"
    assert reg.get("echo_again").description == "Echo a text, again." and reg.get("echo_again").retries == 0
    bad = write(tmp_path, "bad.yaml", "version: 1\ntools:\n  - {kind: builtin, builtin: echo, options: {prefx: 1}}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3:.*bad option.*prefx"):
        load_registry(bad)


def test_openapi_from_the_servers_url(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The OpenAPI document is fetched from the running API and converted; its operations are called."""
    base, app = api
    p = write(tmp_path, "r.yaml", f"""\
        version: 1
        network: {{allow_loopback: true}}
        tools:
          - kind: openapi
            spec: {base}/openapi.json
            operations: [findStores, getStore, createOrder, cancelOrder]
            prefix: store_
    """)
    reg = load_registry(p)
    assert sorted(reg.names) == ["store_cancelOrder", "store_createOrder", "store_findStores", "store_getStore"]
    create = reg.get("store_createOrder")
    assert create.mutates_state and set(create.parameters["required"]) == {"store_id", "items", "deliver_to"}
    assert create.parameters["properties"]["items"]["items"]["properties"]["quantity"]["minimum"] == 1  # $ref resolved
    r = call(reg, "store_findStores", near="Old Town Square", open_now=True)
    assert r.ok and json.loads(r.content)["stores"][0]["id"] == "s1"
    r = call(reg, "store_createOrder", store_id="s1", items=[{"sku": "croissant", "quantity": 3}],
             deliver_to="Old Town Square")
    assert r.ok, r.error
    order = json.loads(r.content)["order"]
    r = call(reg, "store_cancelOrder", order_id=order["id"])
    assert r.ok and json.loads(r.content)["order"]["status"] == "cancelled"
    assert app.state.store.order(order["id"])["status"] == "cancelled"


def test_openapi_url_loaded_from_async_code(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A runner that loads registries inside its event loop can still fetch an OpenAPI document by URL."""
    base, _ = api
    p = write(tmp_path, "r.yaml", f"version: 1\nnetwork: {{allow_loopback: true}}\ntools:\n"
                                  f"  - {{kind: openapi, spec: '{base}/openapi.json', operations: [getStore]}}\n")

    async def inside_a_loop() -> ToolRegistry:
        return load_registry(p)

    reg = asyncio.run(inside_a_loop())
    assert call(reg, "getStore", store_id="s2").ok


def test_openapi_local_file_all_operations(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    p = write(tmp_path, "r.yaml", f"""\
        version: 1
        network: {{allow_loopback: true}}
        defaults: {{base_url: "{base}"}}
        tools:
          - kind: openapi
            spec: {OPENAPI}
            operations: ["*"]
    """)
    reg = load_registry(p)
    assert len(reg) == 9
    r = call(reg, "getDistance", **{"from": "s2", "to": "Central Station"})
    assert r.ok and json.loads(r.content)["distance_km"] > 0
    r = call(reg, "listProducts", store_id="s5", category="fish")
    assert r.ok and {p["sku"] for p in json.loads(r.content)["products"]} == {"salmon-300", "shrimp-250"}


def test_openapi_url_refused_by_network_policy(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = api
    p = write(tmp_path, "r.yaml", f"version: 1\ntools:\n  - {{kind: openapi, spec: '{base}/openapi.json', "
                                  "operations: [getStore]}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:3:.*loopback.*allow_loopback"):
        load_registry(p)


def test_in_process_transport_and_into(tmp_path: Path) -> None:
    """``transport=`` sends requests to an in-process ASGI app (how a simulation runner uses the store API)."""
    app = create_app()
    reg = ToolRegistry(backoff_base_s=0.01)
    load_registry(STORE_YAML, env={"STORE_API_URL": "http://store.invalid"}, into=reg,
                  transport=httpx.ASGITransport(app=app))
    r = call(reg, "create_order", store_id="s1", items=[{"sku": "milk-1l", "quantity": 1}], deliver_to="Old Town Square")
    assert r.ok, r.error
    assert app.state.store.snapshot()["stock"]["s1"]["milk-1l"] == 11


def test_several_files_and_duplicates(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "version: 1\ntools:\n  - {kind: python, function: 'keye_agent.store_api.data:seed', "
                                  "name: seed_world, description: A fresh world.}\n")
    b = write(tmp_path, "b.yaml", "version: 1\ntools:\n  - {kind: python, function: 'keye_agent.store_api.data:seed', "
                                  "name: seed_world, description: Again.}\n")
    assert load_registry([a]).names == ["seed_world"]
    with pytest.raises(ConfigError, match=r"b\.yaml:3:.*duplicate tool name 'seed_world'; first defined at .*a\.yaml:3"):
        load_registry([a, b])
    with pytest.raises(ConfigError, match="no registry file"):
        load_registry([])
    with pytest.raises(ConfigError, match="not found"):
        load_registry(tmp_path / "missing.yaml")


def test_shared_include_is_loaded_once(tmp_path: Path) -> None:
    write(tmp_path, "common.yaml", "version: 1\ntools:\n  - {kind: python, function: 'keye_agent.store_api.data:seed', "
                                   "name: seed_world, description: A fresh world.}\n")
    write(tmp_path, "left.yaml", "version: 1\ninclude: [common.yaml]\n")
    write(tmp_path, "right.yaml", "version: 1\ninclude: [common.yaml]\n")
    top = write(tmp_path, "top.yaml", "version: 1\ninclude: [left.yaml, right.yaml]\n")
    assert load_registry(top).names == ["seed_world"]


def test_openapi_whole_body_argument_and_yaml_document(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A request body without listed properties becomes one ``body`` argument sent as the whole JSON body;
    the document is YAML, with a header parameter and a server URL of its own."""
    base, app = api
    write(tmp_path, "orders.yaml", f"""\
        openapi: 3.0.3
        info: {{title: orders, version: "1"}}
        servers: [{{url: "{base}"}}]
        paths:
          /orders:
            post:
              operationId: placeOrder
              summary: Place an order.
              parameters:
                - {{name: X-Request-Id, in: header, schema: {{type: string}}, description: idempotency key}}
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {{type: object, description: the order as the API expects it}}
    """)
    p = write(tmp_path, "r.yaml", "version: 1\nnetwork: {allow_loopback: true}\ntools:\n"
                                  "  - {kind: openapi, spec: orders.yaml, operations: [placeOrder]}\n")
    reg = load_registry(p)
    t = reg.get("placeOrder")
    assert t.parameters["required"] == ["body"] and "X_Request_Id" in t.parameters["properties"]
    r = call(reg, "placeOrder", X_Request_Id="abc",
             body={"store_id": "s3", "items": [{"sku": "chocolate", "quantity": 2}], "deliver_to": "University Campus"})
    assert r.ok, r.error
    oid = json.loads(r.content)["order"]["id"]
    assert app.state.store.order(oid)["items"][0]["quantity"] == 2
