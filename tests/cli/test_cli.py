"""The `keye-agent` command, run in-process through its `main()` (the same function the installed script calls).
Model turns come from the scripted replay backend; tools, registry, loop and output are real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keye_agent.cli.main import main
from keye_agent.types import Trajectory

ROOT = Path(__file__).resolve().parents[2]
TOOLS = str(ROOT / "tests" / "cli" / "session_tools.py")


def _script(tmp_path: Path, *turns: str) -> str:
    path = tmp_path / "turns.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in turns), encoding="utf-8")
    return f"scripted:{path}"


CALL_ALPHA = '<tool_call>\n{"name": "lookup", "arguments": {"key": "alpha"}}\n</tool_call>'


def test_run_prints_calls_results_and_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _script(tmp_path, CALL_ALPHA, "alpha is ALPHA-VALUE-1")
    rc = main(["run", "what is alpha?", "--model", model, "--tools", TOOLS])
    out = capsys.readouterr().out
    assert rc == 0
    assert "call lookup" in out and '"key": "alpha"' in out
    assert "result lookup" in out and "ALPHA-VALUE-1" in out
    assert "final answer" in out and "completed · 2 steps" in out


def test_run_json_and_save(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _script(tmp_path, CALL_ALPHA, "alpha is ALPHA-VALUE-1")
    saved = tmp_path / "run.jsonl"
    rc = main(["run", "what is alpha?", "--model", model, "--tools", TOOLS, "--json", "--save", str(saved)])
    captured = capsys.readouterr()
    assert rc == 0
    payload = json.loads(captured.out)  # stdout holds exactly one JSON object
    assert payload["status"] == "completed" and payload["final_answer"] == "alpha is ALPHA-VALUE-1"
    assert payload["steps"] == 2 and payload["trajectory"] == str(saved)
    assert payload["model"].startswith("scripted-replay:")
    traj = Trajectory.load(saved)
    assert traj.steps[0].tool_results[0].content == "ALPHA-VALUE-1"


def test_run_that_does_not_complete_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _script(tmp_path, CALL_ALPHA, CALL_ALPHA.replace("alpha", "beta"))
    rc = main(["run", "loop", "--model", model, "--tools", TOOLS, "--max-steps", "2", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert rc == 1 and payload["status"] == "max_steps" and "2 steps" in payload["error"]


def test_state_changing_tool_is_refused_without_a_terminal_unless_yes(tmp_path: Path, capsys, monkeypatch) -> None:
    notes = tmp_path / "notes"
    monkeypatch.setenv("KEYE_TEST_NOTES", str(notes))
    call = '<tool_call>\n{"name": "write_note", "arguments": {"text": "x"}}\n</tool_call>'
    rc = main(["run", "note x", "--model", _script(tmp_path, call, "refused"), "--tools", TOOLS])
    out = capsys.readouterr().out
    assert rc == 0 and "no terminal to ask" in out and "did not approve" in out and not notes.exists()
    rc = main(["run", "note x", "--model", _script(tmp_path, call, "done"), "--tools", TOOLS, "--yes"])
    assert rc == 0 and notes.read_text() == "x\n"


@pytest.mark.parametrize(("argv", "code", "message", "hint"), [
    (["run", "hi", "--model", "nosuchmodel"], 2, "unknown model 'nosuchmodel'", "openai:nosuchmodel"),
    (["run", "hi", "--model", "./missing/model.gguf"], 2, "model path not found", None),
    (["run", "hi", "--model", "demo", "--random-weights"], 2, "--random-weights applies to Keye models only", "keye:"),
    (["run", "hi", "--tools", "nowhere.yaml"], 2, "tool file not found: nowhere.yaml", None),
    (["run", "hi", "--model", "openai:m", "--constrained"], 2, "applies to local models only", "constrain"),
])
def test_errors_are_one_line_with_a_hint(argv, code, message, hint, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == code
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("error: ") and message in lines[0]
    if hint:
        assert len(lines) == 2 and lines[1].startswith("hint: ") and hint in lines[1]


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--debug", "run", "hi", "--model", "nosuchmodel"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" in err and "ConfigError" in err


def test_bad_script_line_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"fine"\n{not json\n', encoding="utf-8")
    rc = main(["run", "x", "--model", f"scripted:{bad}"])
    assert rc == 2 and f"{bad}:2: not a scripted turn" in capsys.readouterr().err


def test_tools_list_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.txt").write_text("keye agent offline search corpus", encoding="utf-8")
    assert main(["tools", "list", "--tools", TOOLS, "--search", f"local:{corpus}"]) == 0
    out = capsys.readouterr().out
    for name in ("lookup", "write_note", "slow", "web_search", "fetch_url"):
        assert name in out
    assert "mutates" in out  # write_note is flagged
    assert main(["tools", "list", "--tools", TOOLS, "--json"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    assert [s["function"]["name"] for s in schemas] == ["lookup", "write_note", "slow"]


def test_tools_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "validate", str(ROOT / "examples" / "store.yaml")]) == 0
    assert "ok" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text("tools:\n  - name: x\n    kind: nonsense\n", encoding="utf-8")
    assert main(["tools", "validate", str(broken)]) == 1
    err = capsys.readouterr().err
    assert str(broken) in err  # problems are located in the file


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("keye-agent ") and "xgrammar" in out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("run", "chat", "demo", "tools", "sandbox", "tau", "version"):
        assert cmd in out


def test_installed_script_runs() -> None:
    """The console script entry point (pyproject [project.scripts]) works as a separate process."""
    exe = Path(sys.executable).with_name("keye-agent")
    proc = subprocess.run([str(exe), "version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("keye-agent ")


def test_yaml_registry_tools(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "list", "--tools", str(ROOT / "examples" / "store.yaml")]) == 0
    out = capsys.readouterr().out
    assert "get_order" in out and "cancel_order" in out


@pytest.mark.docker
def test_run_with_the_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--sandbox adds run_code: the scripted turn's code runs in the real Docker sandbox, which is closed after."""
    from keye_agent.errors import SandboxError
    from keye_agent.sandboxes import default_image
    from keye_agent.sandboxes._docker import docker_client, image_exists
    from keye_agent.sandboxes.owner import list_sandboxes

    try:
        docker_client()
    except SandboxError as e:
        pytest.fail(f"{e}; run `bash scripts/setup_docker.sh` (make test does)")
    if not image_exists(default_image()):
        pytest.fail("sandbox image missing; run `python -m keye_agent.sandboxes build` (make test does)")
    import os

    def mine() -> set[str]:
        return {c.name for c in list_sandboxes() if c.owner_pid == os.getpid()}

    before = mine()
    call = '<tool_call>\n{"name": "run_code", "arguments": {"code": "print(6 * 7)"}}\n</tool_call>'
    rc = main(["run", "compute", "--model", _script(tmp_path, call, "It is 42."), "--sandbox", "--json",
               "--save", str(tmp_path / "t.jsonl")])
    assert rc == 0
    result = Trajectory.load(tmp_path / "t.jsonl").steps[0].tool_results[0]
    assert result.ok and "42" in result.content
    assert mine() <= before  # the command closed its sandbox: no container outlives it
