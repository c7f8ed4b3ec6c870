"""The `keye-agent serve` command itself, in a subprocess on a free loopback port (its log in a file): its bearer
key (from the variable --api-key-env names; never in the log), the openai SDK against it, `keye-agent tau run`
against it at concurrency 8 (agent and user both `openai:` models on the server), and the options it refuses
before any model loads."""

from __future__ import annotations

import inspect
import json
import os
import subprocess

import httpx
import openai
import pytest
from serve_fixtures import MODEL, ROOT, WEATHER, keye_agent_exe, serve_command

KEY = "kA9-serve-test-key-7f3c2e"
TINY = ["--model", "keye:tiny", "--random-weights", "--served-model-name", MODEL]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve_command([*TINY, "--api-key-env", "KEYE_SERVE_TEST_KEY", "--max-queue", "32"], log,
                       env={"KEYE_SERVE_TEST_KEY": KEY}) as api:
        yield api, log


def _cli(args: list[str], cwd, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run([keye_agent_exe(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})})


def test_the_command_serves_the_sdk_with_its_key(served):
    api, log = served
    assert httpx.post(api + "/chat/completions", json={"model": MODEL, "messages": []}).status_code == 401
    client = openai.OpenAI(base_url=api, api_key=KEY, max_retries=0, timeout=120)
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Weather?"}],
                                       tools=[WEATHER], tool_choice="required", max_tokens=64)
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
    text = log.read_text()
    assert f"serving '{MODEL}' on http://127.0.0.1:" in text and "POST /v1/chat/completions" in text
    assert KEY not in text


@pytest.mark.slow
def test_tau_run_at_concurrency_8_against_the_server(served, tmp_path):
    api, log = served
    out = tmp_path / "results.json"
    proc = _cli(["tau", "run", "--domain", "mock", "--agent-model", f"openai:{MODEL}", "--agent-base-url", api,
                 "--user-model", f"openai:{MODEL}", "--user-base-url", api, "--max-concurrency", "8",
                 "--num-tasks", "8", "--max-tokens", "8", "--max-steps", "4", "--save-to", str(out), "--json"],
                tmp_path, env={"OPENAI_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    results = json.loads(out.read_text())
    sims = results["simulations"]
    assert len(sims) == len(results["tasks"]) == summary["num_simulations"] == 8
    assert {s["task_id"] for s in sims} == {t["id"] for t in results["tasks"]}
    for s in sims:
        assert s["termination_reason"] and s["messages"], s["task_id"]
        # an error on the way would say which: the server answered every model call of every simulation
        assert s["termination_reason"] not in ("infrastructure_error", "unexpected_error"), s["info"]
    health = httpx.get(api.removesuffix("/v1") + "/health").json()
    assert health["peak"] >= 2 and health["refused"] == 0 and health["active"] == 0
    assert KEY not in log.read_text()


def test_the_command_refuses_bad_options_before_loading(tmp_path):
    proc = _cli(["serve", "--model", "keye:tiny", "--random-weights", "--api-key-env", "KEYE_SERVE_UNSET_VAR"],
                tmp_path, timeout=120)
    assert proc.returncode == 2 and "KEYE_SERVE_UNSET_VAR" in proc.stderr and "not set" in proc.stderr
    proc = _cli(["serve", "--model", "openai:upstream", "--base-url", "http://127.0.0.1:9/v1", "--max-batch", "4"],
                tmp_path, timeout=120)
    assert proc.returncode == 2 and "--max-batch 4" in proc.stderr
    proc = _cli(["serve", "--model", "keye:nosuchpreset", "--random-weights"], tmp_path, timeout=120)
    assert proc.returncode == 2 and "preset" in proc.stderr


def test_max_batch_on_the_keye_backend(tmp_path):
    """Passed on to a Keye backend that batches; until it does, more than 1 is a clear error."""
    from keye_agent.backends.keye import KeyeBackend
    from keye_agent.backends.specs import parse_model_spec
    from keye_agent.cli.serve import batch_options
    from keye_agent.errors import ConfigError

    spec = parse_model_spec("keye:tiny", random_weights=True)
    assert batch_options(spec, 1) == {}
    if "max_batch" in inspect.signature(KeyeBackend).parameters:
        assert batch_options(spec, 8) == {"max_batch": 8}
    else:
        with pytest.raises(ConfigError, match="one request at a time"):
            batch_options(spec, 8)


def test_loopback_addresses_are_told_apart():
    from keye_agent.serve import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.2", "example.com"]))
