"""Model specs (`keye_agent.backends.load_model`): every form reaches the right backend, bad specs fail with a clear
error before anything loads, and the old import paths still work."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from keye_agent.backends import load_model as resolve_model
from keye_agent.backends import parse_model_spec
from keye_agent.backends.openai import OpenAIBackend
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.backends.specs import scripted_from_file
from keye_agent.errors import ConfigError
from keye_agent.types import AssistantTurn, Message, StepRecord, ToolCall, Trajectory

HAS_KEYE = importlib.util.find_spec("keye_agent.backends.keye") is not None


def test_openai_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    b = resolve_model("openai:qwen3-8b", base_url="http://127.0.0.1:9/v1", context_window=4096)
    assert isinstance(b, OpenAIBackend) and b.model == "qwen3-8b"
    assert b.url == "http://127.0.0.1:9/v1/chat/completions" and b.context_window == 4096
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8/v1")
    assert resolve_model("openai:m").url == "http://127.0.0.1:8/v1/chat/completions"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="needs a model name"):
        resolve_model("openai:")


@pytest.mark.parametrize(("spec", "match"), [
    ("", "no model given"),
    ("gpt-4o", "unknown model 'gpt-4o'"),
    ("some/dir/that/is/missing", "model path not found"),
])
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve_model(spec)


def test_not_a_model_file(tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\0")
    with pytest.raises(ConfigError, match="neither a .gguf file nor a checkpoint directory"):
        resolve_model(str(f))
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model(str(d))


def test_random_weights_only_for_keye() -> None:
    with pytest.raises(ConfigError, match="Keye models only"):
        resolve_model("openai:m", random_weights=True)


@pytest.mark.skipif(not HAS_KEYE, reason="needs keye_agent.backends.keye")
@pytest.mark.filterwarnings("ignore:.*has no tokenizer")
def test_keye_preset_with_random_weights() -> None:
    b = resolve_model("keye:tiny", random_weights=True)
    assert type(b).__name__ == "KeyeBackend" and b.name == "keye:tiny"
    with pytest.raises(ConfigError, match="carries no weights"):
        resolve_model("keye:tiny")


@pytest.mark.skipif(HAS_KEYE, reason="the Keye backend is installed (see the test above)")
def test_keye_specs_fail_clearly_without_the_keye_backend(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Keye backend is not available"):
        resolve_model("keye:tiny", random_weights=True)
    ckpt = tmp_path / "keye"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "keye_vl_2", "architectures": ["KeyeVL2"]}))
    with pytest.raises(ConfigError, match="Keye backend is not available"):
        resolve_model(str(ckpt))


def test_scripted_replays_turns_and_trajectories(tmp_path: Path) -> None:
    lines = tmp_path / "turns.jsonl"
    lines.write_text(json.dumps("raw <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>") + "\n"
                     + json.dumps({"text": "done"}) + "\n", encoding="utf-8")
    b = resolve_model(f"scripted:{lines}")
    assert isinstance(b, ScriptedBackend) and b.name == "scripted-replay:turns.jsonl"
    first = b.generate([Message.user("x")])
    assert [c.name for c in first.tool_calls] == ["f"] and first.text == "raw"
    assert b.generate([Message.user("x")]).text == "done"

    traj = Trajectory(task="t", model="m", steps=[
        StepRecord(index=1, turn=AssistantTurn(tool_calls=[ToolCall(id="c", name="g", arguments={"a": 1})])),
        StepRecord(index=2, turn=AssistantTurn(text="final")),
    ])
    saved = traj.save(tmp_path / "traj.jsonl")
    replay = scripted_from_file(saved)
    assert replay.generate([Message.user("t")]).tool_calls[0].arguments == {"a": 1}  # type: ignore[attr-defined]
    assert replay.generate([Message.user("t")]).text == "final"  # type: ignore[attr-defined]


def test_old_import_paths_name_the_same_functions() -> None:
    import keye_agent
    from keye_agent.backends.demo_model import ensure_demo_model
    from keye_agent.cli.demo_model import ensure_demo_model as old_ensure
    from keye_agent.cli.models import resolve_model as old_resolve
    from keye_agent.cli.models import scripted_from_file as old_scripted

    assert keye_agent.load_model is resolve_model is old_resolve
    assert old_scripted is scripted_from_file and old_ensure is ensure_demo_model


def test_parsing_loads_nothing_and_says_what_the_spec_is(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not really")  # never read: parsing looks only at the file system
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama"}))
    keye = tmp_path / "keye"
    keye.mkdir()
    (keye / "config.json").write_text(json.dumps({"model_type": "keye_vl_2"}))
    cases = {"openai:m": ("openai", False), "demo": ("demo", True), str(gguf): ("transformers", True),
             str(ckpt): ("transformers", True), str(keye): ("keye", True), f"keye:{keye}": ("keye", True)}
    for text, (kind, local) in cases.items():
        spec = parse_model_spec(text)
        assert (spec.kind, spec.local) == (kind, local), text
    assert parse_model_spec(f"keye:{keye}").path == keye
    with pytest.raises(ConfigError, match="script not found"):
        parse_model_spec(f"scripted:{tmp_path / 'none.jsonl'}")


def test_constrained_applies_to_local_models_only() -> None:
    with pytest.raises(ConfigError, match="local models only"):
        resolve_model("openai:m", constrained=True)


def test_loading_a_local_model_prints_no_progress_bar(tmp_path: Path) -> None:
    """The Python API is quiet: transformers' own "Loading weights" bar does not reach stderr (the real demo
    model, fetched by the set-up)."""
    import subprocess
    import sys

    code = "from keye_agent.backends.transformers import TransformersBackend\n" \
           "from keye_agent.backends.demo_model import ensure_demo_model\n" \
           "TransformersBackend(ensure_demo_model(quiet=True))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Loading weights" not in proc.stderr and proc.stdout == ""
