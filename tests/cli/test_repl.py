"""The REPL driven through a real pseudo-terminal (pexpect), on the scripted replay backend: the model's turns are
replayed from a JSONL file; the tools (tests/cli/session_tools.py), the agent loop and the REPL are real."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from keye_agent.types import Trajectory

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tests" / "cli" / "session_tools.py"


def _script(path: Path, turns: list[str]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in turns), encoding="utf-8")
    return path


def _call(name: str, **arguments: object) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


@pytest.fixture
def chat(tmp_path: Path):  # type: ignore[no-untyped-def]
    children: list[pexpect.spawn] = []

    def start(turns: list[str], *extra: str) -> pexpect.spawn:
        script = _script(tmp_path / "turns.jsonl", turns)
        env = {**os.environ, "KEYE_AGENT_HOME": str(tmp_path / "home"), "KEYE_TEST_NOTES": str(tmp_path / "notes"),
               "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
        child = pexpect.spawn(sys.executable, ["-m", "keye_agent.cli.main", "chat", "--model", f"scripted:{script}",
                                               "--tools", str(TOOLS), *extra],
                              env=env, cwd=str(tmp_path), encoding="utf-8", timeout=30, dimensions=(40, 120))
        child.logfile_read = open(tmp_path / "pty.log", "w")  # noqa: SIM115 - closed with the child
        children.append(child)
        child.expect("not a model")  # the banner labels the replay backend
        child.expect("you>")
        return child

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def test_streams_answer_and_tool_panels_then_slash_commands(chat, tmp_path: Path) -> None:
    child = chat([_call("lookup", key="alpha"), "alpha maps to ALPHA-VALUE-1."])
    child.send("what is alpha?" + "\r")
    child.expect("call.*?lookup")
    child.expect("result.*?lookup")
    child.expect("ALPHA-VALUE-1")  # the tool's real output, in the result panel
    child.expect("alpha maps to ALPHA-VALUE-1.")
    child.expect("completed")
    child.expect("you>")
    child.send("/tools" + "\r")
    child.expect("write_note")
    child.expect("you>")
    child.send("/trace" + "\r")
    child.expect("trajectory · 2 steps")
    child.expect("you>")
    saved = tmp_path / "session.jsonl"
    child.send(f"/save {saved}" + "\r")
    child.expect("saved 2 steps")
    child.expect("you>")
    child.send("/exit" + "\r")
    child.expect("bye")
    child.expect(pexpect.EOF)
    traj = Trajectory.load(saved)
    assert [r.content for s in traj.steps for r in s.tool_results] == ["ALPHA-VALUE-1"]
    assert traj.messages[-1].text == "alpha maps to ALPHA-VALUE-1."
    history = (tmp_path / "home" / "history").read_text(encoding="utf-8")
    assert "what is alpha?" in history and "/trace" in history  # persistent input history


def test_approval_no_then_always(chat, tmp_path: Path) -> None:
    child = chat([_call("write_note", text="first"), "I was not allowed.",
                  _call("write_note", text="second"), "Written.",
                  _call("write_note", text="third"), "Written again."])
    child.send("note first" + "\r")
    child.expect(r"allow write_note")
    child.send("n" + "\r")
    child.expect("did not approve")  # the refusal, in the red failed-call panel
    child.expect("I was not allowed.")
    child.expect("you>")
    assert not (tmp_path / "notes").exists()
    child.send("note second" + "\r")
    child.expect(r"allow write_note")
    child.send("a" + "\r")
    child.expect("Written.")
    child.expect("you>")
    child.sendline("note third")  # "always" holds for the session: no question this time
    child.expect("Written again.")
    idx = child.expect(["you>", "allow write_note"])
    assert idx == 0
    assert (tmp_path / "notes").read_text(encoding="utf-8").splitlines() == ["second", "third"]
    child.sendeof()
    child.expect("bye")


def test_ctrl_c_interrupts_the_step_and_keeps_the_session(chat) -> None:
    child = chat([_call("slow", seconds=60), "The next message still works."])
    child.send("wait for a minute" + "\r")
    child.expect("call.*?slow")
    child.sendintr()
    child.expect("interrupted; the session goes on", timeout=10)
    child.expect("you>")
    child.send("are you there?" + "\r")
    child.expect("The next message still works.")
    child.expect("you>")
    child.send("/trace" + "\r")
    child.expect("cancelled by the user")  # the interrupted step is in the trajectory, with why it ended
    child.expect("you>")
    child.send("half a thought")
    child.sendintr()  # Ctrl-C at the prompt clears the line (else the next command would go to the model)
    child.send("/exit\r")
    child.expect("bye")
    child.expect(pexpect.EOF)


def test_multiline_input_reset_load_and_unknown_command(chat, tmp_path: Path) -> None:
    child = chat(["first answer", "second answer"])
    child.send("line one\\\r")  # a trailing backslash continues the input on the next line
    child.send("line two\r")
    child.expect("first answer")
    child.expect("you>")
    saved = tmp_path / "one.jsonl"
    child.send(f"/save {saved}" + "\r")
    child.expect("saved 1 steps")
    child.send("/reset" + "\r")
    child.expect("conversation cleared")
    child.send("/trace" + "\r")
    child.expect("no steps yet")
    child.send(f"/load {saved}" + "\r")
    child.expect("loaded 1 steps and 2 messages")
    child.send("/bogus" + "\r")
    child.expect("unknown command /bogus")
    child.send("/model" + "\r")
    child.expect("scripted-replay:turns.jsonl")
    child.send("/exit" + "\r")
    child.expect(pexpect.EOF)
    traj = Trajectory.load(saved)
    assert traj.task == "line one\nline two"


def test_model_command_takes_random_weights(chat) -> None:
    """`/model keye:tiny` alone is refused before loading (a preset has no weights); with --random-weights the tiny
    Keye model loads (real model code, random weights) and becomes the session's model."""
    child = chat(["unused"])
    child.send("/model keye:tiny" + "\r")
    child.expect("carries no weights")
    child.expect("you>")
    child.send("/model keye:tiny --random-weights --bogus" + "\r")
    child.expect("unknown: --bogus")
    child.expect("you>")
    child.send("/model keye:tiny --random-weights" + "\r")
    child.expect("model is now .*?keye:tiny", timeout=120)
    child.expect("you>")
    child.send("/exit" + "\r")
    child.expect(pexpect.EOF)
