"""A registry's ``spec:`` URL under hostile answers (issue 24 item 5), from a real server on a loopback port: a body
dripped a byte a second ends at the fetch's overall deadline (httpx's timeout is per read), a compressed bomb stops
at the document cap, and an alias bomb in a YAML spec is refused like one in a registry."""

from __future__ import annotations

import gzip
import textwrap
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from keye_agent.errors import ConfigError
from keye_agent.tools import openapi
from keye_agent.tools.yaml_registry import load_registry
from tests.tools.loopback import serve

SPEC = b'{"openapi": "3.0.0", "paths": {"/x": {"get": {"operationId": "getX", "responses": {}}}}}'


def _registry(tmp_path: Path, url: str) -> Path:
    p = tmp_path / "reg.yaml"
    p.write_text(textwrap.dedent(f"""\
        version: 1
        network: {{allow_loopback: true}}
        tools:
          - {{kind: openapi, spec: "{url}", operations: [getX]}}
        """))
    return p


def _drip(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(SPEC)))
    h.end_headers()
    try:
        for i in range(len(SPEC)):  # a byte a second: never a read timeout, never the end
            h.wfile.write(SPEC[i:i + 1])
            h.wfile.flush()
            time.sleep(1.0)
    except OSError:
        pass  # the client gave up, as it should


def test_a_dripping_spec_url_ends_at_the_overall_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openapi, "FETCH_DEADLINE_S", 2.0)
    with serve({"/spec.json": _drip}) as base:
        reg = _registry(tmp_path, f"{base}/spec.json")
        with pytest.raises(ConfigError, match=r"took longer than 2 s") as ei:
            load_registry(reg)
    assert (ei.value.line, ei.value.column) == (4, 27)


def test_a_compressed_spec_bomb_stops_at_the_document_cap(tmp_path: Path) -> None:
    bomb = gzip.compress(gzip.compress(b" " * (64 << 20), 9), 9)

    def bombed(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Encoding", "gzip, gzip")
        h.send_header("Content-Length", str(len(bomb)))
        h.end_headers()
        h.wfile.write(bomb)

    with serve({"/spec.json": bombed}) as base:
        with pytest.raises(ConfigError, match=r"is over 5,000,000 bytes"):
            load_registry(_registry(tmp_path, f"{base}/spec.json"))


def test_an_alias_bomb_in_a_yaml_spec_is_refused(tmp_path: Path) -> None:
    lines = ['openapi: "3.0.0"', "paths: {}", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9) + "]")
    (tmp_path / "spec.yaml").write_text("\n".join(lines) + "\n")
    reg = tmp_path / "reg.yaml"
    reg.write_text("version: 1\ntools:\n  - {kind: openapi, spec: spec.yaml, base_url: 'https://x.example', "
                   "operations: ['*']}\n")
    with pytest.raises(ConfigError, match=r"alias bomb"):
        load_registry(reg)
