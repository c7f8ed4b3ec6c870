"""HTTP tools under attack-shaped answers, from a scriptable server on a loopback port (tests/tools/loopback.py).

Secrets echoed in successful answers, secrets past the cut of an error body, secrets in httpx/httpcore logs,
stacked compression layers and dot segments in path arguments. Only the model is scripted (in the agent test).
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import textwrap
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from keye_agent.agent import Agent
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tools.yaml_registry import load_registry
from keye_agent.types import AssistantTurn, ToolCall
from tests.tools.loopback import reply, serve

BEARER = "bearer-7Qm2xV9pLk4Rt8Zc1Wn6Yb3Hs5Jd0Fa"  # 34 characters, none of them in ordinary text
QUERY_KEY = "qk-Z8rT3vM1nB6cX4wL9pQ2sK7yH5dF0gJ"
SESSION = "sess-N4bV8cX2zL6kJ1hG9fD3sA7qW5eR0t"
ENV = {"SVC_CRED": BEARER, "SVC_Q": QUERY_KEY, "SVC_SESSION_ID": SESSION}
SECRETS = (BEARER, QUERY_KEY, SESSION)


def _echo(h: BaseHTTPRequestHandler) -> None:
    body = json.dumps({"target": h.path, "headers": dict(h.headers.items())}).encode()
    reply(h, 200, body, {"Content-Type": "application/json", "Location": f"/next?token={BEARER}"})


def _registry(tmp_path: Path, base: str, tools: str) -> object:
    path = tmp_path / "reg.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        network: {allow_loopback: true}
        defaults: {base_url: "%s", timeout_s: 5, retries: 0}
        tools:
    """) % base + textwrap.indent(textwrap.dedent(tools), "  "))
    return load_registry(path, env=ENV)


ECHO_TOOLS = """\
    - name: echo_bearer
      kind: http
      description: echo with a bearer token
      path: /echo
      auth: {type: bearer, token_env: SVC_CRED}
      headers: {X-Session: "${SVC_SESSION_ID}"}
    - name: echo_query
      kind: http
      description: echo with a key in the query
      path: /echo
      auth: {type: api_key, key_env: SVC_Q, query: key}
"""


def _leaks(text: str) -> list[str]:
    """Every secret, or any 8-character piece of one, found in ``text``."""
    found = []
    for s in SECRETS:
        pieces = {s[i:i + 8] for i in range(len(s) - 7)}
        if any(p in text for p in pieces):
            found.append(s)
    return found


def test_secrets_echoed_by_a_successful_answer_reach_no_output(tmp_path: Path) -> None:
    with serve({"/echo": _echo}) as base:
        reg = _registry(tmp_path, base, ECHO_TOOLS)
        turns = [AssistantTurn(tool_calls=[ToolCall(id="c1", name="echo_bearer", arguments={}),
                                           ToolCall(id="c2", name="echo_query", arguments={})]), "done"]
        agent = Agent(ScriptedBackend(turns), reg)
        events = list(agent.stream("echo"))
        result = events[-1].result  # RunFinished
        saved = result.trajectory.save(tmp_path / "run.jsonl").read_text()
    results = result.trajectory.steps[0].tool_results
    assert all(r.ok for r in results), [r.error for r in results]
    assert "***" in results[0].content and "x-session" in results[0].content.lower()  # the echo did come back
    assert _leaks(saved) == [] and _leaks(result.model_dump_json()) == [] and _leaks(repr(events)) == []


def test_a_secret_past_the_cut_of_an_error_body_leaves_no_piece(tmp_path: Path) -> None:
    def unauthorized(h: BaseHTTPRequestHandler) -> None:  # the token starts 6 characters before the 600 cut
        reply(h, 401, json.dumps({"detail": "x" * 577 + " Bearer " + BEARER}).encode(),
              {"Content-Type": "application/json"})

    def text_500(h: BaseHTTPRequestHandler) -> None:
        reply(h, 500, ("y" * 590 + BEARER + " trailing").encode(), {"Content-Type": "text/plain"})

    def malformed(h: BaseHTTPRequestHandler) -> None:  # the 120-character quote of a malformed JSON body
        reply(h, 200, ('{"a": "' + "z" * 100 + BEARER + '"').encode(), {"Content-Type": "application/json"})

    with serve({"/401": unauthorized, "/500": text_500, "/bad": malformed}) as base:
        reg = _registry(tmp_path, base, "".join(
            f"- {{name: t{p}, kind: http, description: d, path: /{p}, auth: {{type: bearer, token_env: SVC_CRED}}}}\n"
            for p in ("401", "500", "bad")))
        results = reg.dispatch_sync([ToolCall(id=p, name=f"t{p}", arguments={}) for p in ("401", "500", "bad")])
    for r in results:
        assert not r.ok and r.error
        assert _leaks(r.error) == [], r.error
    assert "401" in results[0].error and "malformed JSON" in results[2].error


def test_logs_of_httpx_and_httpcore_carry_no_secret(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):  # a library imported earlier may have quietened them (litellm sets httpx
        caplog.set_level(logging.DEBUG, logger=name)  # to WARNING at import): this test reads what they log
    with serve({"/echo": _echo}) as base:
        reg = _registry(tmp_path, base, ECHO_TOOLS)
        results = reg.dispatch_sync([ToolCall(id="q", name="echo_query", arguments={}),
                                     ToolCall(id="b", name="echo_bearer", arguments={})])
    assert all(r.ok for r in results)
    names = {r.name.split(".")[0] for r in caplog.records}
    assert {"httpx", "httpcore"} <= names  # the request line and the response headers were logged
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "key=***" in text and _leaks(text) == [], text[:2000]


@functools.cache
def _bomb() -> bytes:
    """256 MB of zeros under three gzip layers: ~250 KB, then ~1 KB, then a few hundred bytes on the wire."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    layer1 = b"".join([*(inner.compress(zeros) for _ in range(256)), inner.flush()])
    return gzip.compress(gzip.compress(layer1, 9), 9)


def _stacked_gzip(h: BaseHTTPRequestHandler) -> None:
    reply(h, 200, _bomb(), {"Content-Type": "application/json", "Content-Encoding": "gzip, gzip, gzip"})


def test_stacked_compression_is_capped_on_decoded_bytes_as_they_stream(tmp_path: Path) -> None:
    def ok_gzip(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, gzip.compress(gzip.compress(b'{"ok": true}')),
              {"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"})

    def brotli(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, b"\x0b\x01\x80hi\x03", {"Content-Type": "text/plain", "Content-Encoding": "br"})

    with serve({"/bomb": _stacked_gzip, "/ok": ok_gzip, "/br": brotli}) as base:
        reg = _registry(tmp_path, base, "".join(f"- {{name: t_{p}, kind: http, description: d, path: /{p}}}\n"
                                                for p in ("bomb", "ok", "br")))
        _bomb()
        tracemalloc.start()
        bomb = reg.dispatch_sync([ToolCall(id="b", name="t_bomb", arguments={})])[0]
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        ok, br = reg.dispatch_sync([ToolCall(id="o", name="t_ok", arguments={}),
                                    ToolCall(id="r", name="t_br", arguments={})])
    assert not bomb.ok and "more than 1,000,000 bytes (decoded)" in (bomb.error or "")
    assert peak < 64 << 20, f"peak {peak:,} bytes while decoding"  # a 1 MB cap, not the 256 MB body
    assert ok.ok and json.loads(ok.content) == {"ok": True}
    assert not br.ok and "Content-Encoding 'br'" in (br.error or "")


def test_dot_segments_in_path_arguments_stay_inside_the_template(tmp_path: Path) -> None:
    seen: list[str] = []
    with serve({}, seen) as base:
        reg = _registry(tmp_path, base, """\
            - name: orders
              kind: http
              description: orders of one user
              path: /api/users/{id}/orders
              arguments: {id: {type: string, description: user id}}
            """)
        for value in ("..", ".", "../admin", "a b/c"):
            reg.dispatch_sync([ToolCall(id="c", name="orders", arguments={"id": value})])
    assert seen == ["/api/users/%2E%2E/orders", "/api/users/%2E/orders", "/api/users/..%2Fadmin/orders",
                    "/api/users/a%20b%2Fc/orders"]
