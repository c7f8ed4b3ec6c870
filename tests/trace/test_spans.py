"""Spans of a run, read back from the OpenTelemetry SDK's in-memory exporter: the tree, the GenAI attributes,
and no secret in any attribute. The model is scripted; tools, registry, loop and SDK are real."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from keye_agent.agent import Agent
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.errors import ToolExecutionError
from keye_agent.tools import tool

SECRET = "sk-trace-test-9f8e7d6c5b4a39281706"


def _call(name: str, **args: object) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


def _tools():
    flaky_calls = {"n": 0}

    @tool
    def lookup(key: str) -> str:
        """Look a key up.

        Args:
            key: The key.
        """
        if key == "missing":
            raise KeyError(f"no such key: {key}")
        return f"value of {key}"

    @tool(retries=2)
    def flaky(key: str) -> str:
        """Fails once with a transient fault, then answers.

        Args:
            key: The key.
        """
        flaky_calls["n"] += 1
        if flaky_calls["n"] == 1:
            raise ToolExecutionError("connection reset", transient=True)
        return f"flaky {key}"

    return [lookup, flaky]


def _by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def test_span_tree_and_genai_attributes(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    model = ScriptedBackend([_call("lookup", key="alpha") + _call("flaky", key="beta"),
                             _call("lookup", key="missing"), "alpha is known"], name="scripted-test")
    agent = Agent(model, _tools(), tracer=provider)
    result = agent.run("what is alpha?")
    assert result.status == "completed"
    spans = exporter.get_finished_spans()

    [run] = _by_name(spans, "invoke_agent")
    assert run.parent is None
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.request.model"] == "scripted-test"
    assert run.attributes["keye.run.status"] == "completed"
    assert run.attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens > 0
    assert run.attributes["gen_ai.usage.output_tokens"] == result.usage.completion_tokens > 0

    steps = _by_name(spans, "step ")
    assert [s.name for s in sorted(steps, key=lambda s: s.start_time)] == ["step 1", "step 2", "step 3"]
    assert all(s.parent.span_id == run.context.span_id for s in steps)
    by_step = {s.context.span_id: s for s in steps}

    chats = _by_name(spans, "chat ")
    assert len(chats) == 3 and {by_step[c.parent.span_id].name for c in chats} == {"step 1", "step 2", "step 3"}
    first = min(chats, key=lambda s: s.start_time)
    assert first.name == "chat scripted-test"
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.provider.name"] == "keye_agent"
    assert first.attributes["gen_ai.request.model"] == "scripted-test"
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert first.attributes["gen_ai.usage.input_tokens"] == result.trajectory.steps[0].usage.prompt_tokens > 0
    assert first.attributes["gen_ai.usage.output_tokens"] == result.trajectory.steps[0].usage.completion_tokens > 0
    assert first.attributes["gen_ai.response.time_to_first_chunk"] >= 0  # the scripted backend streams
    assert first.attributes["keye.model.tool_calls"] == 2

    tools = _by_name(spans, "execute_tool ")
    assert sorted(t.name for t in tools) == ["execute_tool flaky", "execute_tool lookup", "execute_tool lookup"]
    # call ids are unique within a turn: a tool span is found by its step and its call id
    calls = {(s.index, c.id): c for s in result.trajectory.steps if s.turn for c in s.turn.tool_calls}
    results = {(s.index, r.call_id): r for s in result.trajectory.steps for r in s.tool_results}
    for t in tools:
        key = (by_step[t.parent.span_id].attributes["keye.step.index"], t.attributes["gen_ai.tool.call.id"])
        assert t.attributes["gen_ai.operation.name"] == "execute_tool"
        assert t.attributes["gen_ai.tool.name"] == calls[key].name
        assert t.attributes["keye.tool.arguments.size"] == len(json.dumps(calls[key].arguments))
        assert (t.end_time - t.start_time) / 1e9 == pytest.approx(results[key].duration_s, abs=1e-6)
    flaky = _by_name(spans, "execute_tool flaky")[0]
    assert flaky.attributes["keye.tool.attempts"] == 2 and flaky.attributes["keye.tool.retries"] == 1
    assert flaky.attributes["keye.tool.ok"] is True and flaky.status.status_code is not StatusCode.ERROR
    failed = [t for t in tools if not t.attributes["keye.tool.ok"]]
    assert len(failed) == 1
    assert failed[0].attributes["error.type"] == "KeyError"
    assert failed[0].attributes["keye.tool.error.kind"] == "failed"
    assert failed[0].status.status_code is StatusCode.ERROR
    assert by_step[failed[0].parent.span_id].name == "step 2"
    assert by_step[failed[0].parent.span_id].attributes["keye.step.faults"] == ("tool",)
    # content is opt-in: without it, no argument or result text is on any span
    assert not any("gen_ai.tool.call.arguments" in t.attributes for t in tools)


@pytest.mark.parametrize("capture", [False, True], ids=["no-content", "content"])
def test_secret_from_the_environment_never_reaches_an_attribute(provider, exporter, monkeypatch, capture) -> None:
    monkeypatch.setenv("KEYE_TRACE_TEST_API_KEY", SECRET)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", str(capture).lower())

    @tool
    def echo(text: str) -> str:
        """Say it back, and fail on request.

        Args:
            text: What to say.
        """
        if text.startswith("fail"):
            raise RuntimeError(f"cannot echo {text}")
        return f"echo: {text} (token {SECRET})"

    model = ScriptedBackend([_call("echo", text=f"use {SECRET}") + _call("echo", text=f"fail {SECRET}"),
                             f"done with {SECRET}"], name="scripted-secret")
    agent = Agent(model, [echo], tracer=provider.get_tracer("test"))
    result = agent.run(f"echo the key {SECRET}")
    assert result.status == "completed"
    spans = exporter.get_finished_spans()
    failed = [s for s in spans if s.name == "execute_tool echo" and s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1 and "cannot echo fail ***" in failed[0].status.description
    if capture:  # the secret was there to leak: in the arguments, the result and the model's output
        assert any("***" in str(s.attributes.get("gen_ai.tool.call.result", "")) for s in spans)
    for s in spans:
        text = json.dumps({"name": s.name, "attributes": dict(s.attributes), "status": s.status.description,
                           "events": [dict(e.attributes or {}) for e in s.events]}, default=list)
        assert SECRET not in text, s.name


def test_opt_in_content_is_captured_redacted(provider, exporter, monkeypatch) -> None:
    monkeypatch.setenv("KEYE_TRACE_TEST_TOKEN", SECRET)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")

    @tool
    def echo(text: str) -> str:
        """Say it back.

        Args:
            text: What to say.
        """
        return f"echo: {text} (token {SECRET})"

    model = ScriptedBackend([_call("echo", text=f"hello {SECRET}"), "said it"], name="scripted-content")
    Agent(model, [echo], tracer=provider).run("say hello")
    spans = exporter.get_finished_spans()
    [t] = _by_name(spans, "execute_tool echo")
    args = t.attributes["gen_ai.tool.call.arguments"]
    assert "hello ***" in args and SECRET not in args
    assert t.attributes["gen_ai.tool.call.result"] == "echo: hello *** (token ***)"
    chat = min(_by_name(spans, "chat "), key=lambda s: s.start_time)
    out = json.loads(chat.attributes["gen_ai.output.messages"])
    assert out[0]["parts"][0]["type"] == "tool_call" and out[0]["parts"][0]["name"] == "echo"
    assert SECRET not in chat.attributes["gen_ai.output.messages"]


def test_run_that_fails_marks_the_run_span(provider, exporter) -> None:
    model = ScriptedBackend([_call("nope", a=1), _call("nope", a=2)], name="scripted-fail")
    result = Agent(model, _tools(), tracer=provider, max_consecutive_errors=2).run("x")
    assert result.status == "max_errors"
    spans = exporter.get_finished_spans()
    [run] = _by_name(spans, "invoke_agent")
    assert run.status.status_code is StatusCode.ERROR and run.attributes["error.type"] == "max_errors"
    tools = _by_name(spans, "execute_tool nope")
    assert len(tools) == 2 and {t.attributes["keye.tool.error.kind"] for t in tools} == {"not_found"}


def test_no_tracer_imports_no_opentelemetry() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom keye_agent.agent import Agent\nfrom keye_agent.backends.scripted import ScriptedBackend\n"
            "Agent(ScriptedBackend(['hi'])).run('x')\n"
            "print(any(m.startswith('opentelemetry') or m.startswith('keye_agent.trace') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_a_backend_failure_ends_the_step_and_the_run_spans(provider, exporter) -> None:
    model = ScriptedBackend([_call("lookup", key="alpha")], name="scripted-short")  # nothing left for step 2
    result = Agent(model, _tools(), tracer=provider).run("x")
    assert result.status == "model_error"
    spans = exporter.get_finished_spans()
    [run] = _by_name(spans, "invoke_agent")
    assert run.attributes["error.type"] == "model_error" and run.status.status_code is StatusCode.ERROR
    step2 = [s for s in spans if s.name == "step 2"]
    assert len(step2) == 1 and step2[0].attributes["keye.step.faults"] == ("model",)
    assert step2[0].parent.span_id == run.context.span_id


def test_a_consumer_that_stops_reading_ends_the_run_span_as_abandoned(provider, exporter) -> None:
    model = ScriptedBackend([_call("lookup", key="alpha"), "done"], name="scripted-abandon")
    stream = Agent(model, _tools(), tracer=provider).stream("x")
    for ev in stream:
        if type(ev).__name__ == "ToolCallFinished":
            break
    stream.close()
    [run] = _by_name(exporter.get_finished_spans(), "invoke_agent")
    assert run.attributes["keye.run.status"] == "abandoned" and run.status.status_code is StatusCode.ERROR
