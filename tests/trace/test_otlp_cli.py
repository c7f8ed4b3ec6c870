"""`keye-agent run --trace otlp` in a subprocess, exporting to a real OTLP/HTTP receiver on loopback: a tiny
http.server that decodes each ExportTraceServiceRequest with opentelemetry-proto. The model is scripted (no
download); the CLI, tools, loop, SDK, exporter and HTTP are real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

ROOT = Path(__file__).resolve().parents[2]
TOOLS = str(ROOT / "tests" / "cli" / "session_tools.py")
SECRET = "ghp_otlpTestToken0123456789abcdefXYZ"


def _script(tmp_path: Path, *turns: str) -> str:
    path = tmp_path / "turns.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in turns), encoding="utf-8")
    return f"scripted:{path}"


def _call(name: str, **args: object) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'


def test_run_trace_otlp_reaches_a_real_receiver(tmp_path: Path, otlp_receiver: ThreadingHTTPServer) -> None:
    model = _script(tmp_path, _call("lookup", key="alpha") + _call("lookup", key=SECRET), "alpha is ALPHA-VALUE-1")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_SERVICE_NAME": "keye-otlp-test",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_receiver.server_address[1]}",
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true", "KEYE_OTLP_TEST_API_TOKEN": SECRET}
    proc = subprocess.run([sys.executable, "-m", "keye_agent.cli.main", "run", "what is alpha?", "--model", model,
                           "--tools", TOOLS, "--trace", "otlp", "--json"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"  # tracing adds nothing to stdout

    spans = otlp_receiver.spans  # type: ignore[attr-defined]
    assert spans and {s["path"] for s in spans} == {"/v1/traces"}
    assert otlp_receiver.resources[0]["service.name"] == "keye-otlp-test"  # type: ignore[attr-defined]
    by_id = {s["span_id"]: s for s in spans}
    [run] = [s for s in spans if s["name"] == "invoke_agent keye-agent"]
    assert run["parent"] == "" and run["attributes"]["keye.run.status"] == "completed"
    assert len({s["trace_id"] for s in spans}) == 1
    steps = sorted((s for s in spans if s["name"].startswith("step ")), key=lambda s: s["name"])
    assert [s["name"] for s in steps] == ["step 1", "step 2"]
    assert all(s["parent"] == run["span_id"] for s in steps)
    chats = [s for s in spans if s["name"].startswith("chat scripted-replay:")]
    assert len(chats) == 2 and all(by_id[c["parent"]]["name"].startswith("step ") for c in chats)
    assert {c["attributes"]["gen_ai.operation.name"] for c in chats} == {"chat"}
    assert all(c["attributes"]["gen_ai.usage.input_tokens"] > 0 for c in chats)
    tools = [s for s in spans if s["name"] == "execute_tool lookup"]
    assert len(tools) == 2 and {by_id[t["parent"]]["name"] for t in tools} == {"step 1"}
    args = sorted(t["attributes"]["gen_ai.tool.call.arguments"] for t in tools)
    assert args == ['{"key": "***"}', '{"key": "alpha"}']
    results = sorted(t["attributes"]["gen_ai.tool.call.result"] for t in tools)
    assert results == ["ALPHA-VALUE-1", "no entry '***'"]
    assert SECRET not in json.dumps(spans)


def test_trace_console_writes_spans_to_stderr(tmp_path: Path) -> None:
    model = _script(tmp_path, _call("lookup", key="beta"), "beta is BETA-VALUE-2")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "keye_agent.cli.main", "run", "what is beta?", "--model", model,
                           "--tools", TOOLS, "--trace", "console", "--json"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["final_answer"] == "beta is BETA-VALUE-2"
    assert '"name": "execute_tool lookup"' in proc.stderr and '"name": "invoke_agent keye-agent"' in proc.stderr


def test_bad_trace_value_is_a_usage_error(tmp_path: Path) -> None:
    from keye_agent.cli.main import main

    assert main(["run", "x", "--model", _script(tmp_path, "hi"), "--trace", "jaeger"]) == 2


def test_chat_trace_otlp_exports_a_run_per_message(tmp_path: Path, otlp_receiver: ThreadingHTTPServer) -> None:
    """The REPL through a real pseudo-terminal: each message is a run of its own, a trace of its own."""
    pexpect = pytest.importorskip("pexpect")
    model = _script(tmp_path, _call("lookup", key="alpha"), "alpha is ALPHA-VALUE-1", "beta is unknown to me")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KEYE_AGENT_HOME": str(tmp_path / "home"),
           "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "COLUMNS": "120", "LINES": "40",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_receiver.server_address[1]}"}
    child = pexpect.spawn(sys.executable, ["-m", "keye_agent.cli.main", "chat", "--model", model,
                                           "--tools", TOOLS, "--trace", "otlp"],
                          env=env, cwd=str(tmp_path), encoding="utf-8", timeout=60, dimensions=(40, 120))
    try:
        child.expect("you>")
        child.sendline("what is alpha?")
        child.expect("ALPHA-VALUE-1")
        child.expect("you>")
        child.sendline("and beta?")
        child.expect("unknown to me")
        child.expect("you>")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)
    spans = otlp_receiver.spans  # type: ignore[attr-defined]
    runs = [s for s in spans if s["name"] == "invoke_agent keye-agent"]
    assert len(runs) == 2 and len({r["trace_id"] for r in runs}) == 2
    assert [s["name"] for s in spans].count("execute_tool lookup") == 1
