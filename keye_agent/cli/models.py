"""`resolve_model`: one string names any model backend, for the CLI and the example scripts.

    resolve_model("openai:qwen3-8b", base_url="http://localhost:8000/v1")   # any OpenAI-compatible server
    resolve_model("demo")                                                  # SmolLM2-135M on the CPU (offline)
    resolve_model("path/to/model.gguf")                                    # a GGUF file through transformers
    resolve_model("path/to/hf-checkpoint")                                 # a transformers checkpoint directory
    resolve_model("keye:tiny", random_weights=True)                        # the Keye model (keye backend)
    resolve_model("path/to/keye-checkpoint")                               # a Keye-VL-2.0 checkpoint

``scripted:FILE.jsonl`` replays recorded turns (a test and replay backend, never a model; see
:func:`scripted_from_file`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from keye_agent.errors import ConfigError
from keye_agent.types import AssistantTurn, ModelBackend, Trajectory

DEMO_NAME = "demo:SmolLM2-135M-Instruct"
FORMS = ("openai:NAME (with --base-url)", "demo", "a .gguf file", "a transformers checkpoint directory",
         "keye:PRESET", "a Keye checkpoint directory")


def resolve_model(spec: str, base_url: str | None = None, random_weights: bool = False, **kw: Any) -> ModelBackend:
    """The backend that ``spec`` names. Extra keywords go to the backend's constructor (e.g. ``constrained=False``
    or ``threads=2`` for local models, ``api_key`` or ``context_window`` for OpenAI-compatible servers)."""
    spec = spec.strip()
    if not spec:
        raise ConfigError("no model given", hint="pass --model, e.g. --model demo or --model openai:NAME")
    if random_weights and not (spec.startswith("keye:") or _is_keye_dir(Path(spec))):
        raise ConfigError(f"--random-weights applies to Keye models only, not {spec!r}",
                          hint="use --model keye:PRESET --random-weights")
    if spec.startswith("openai:"):
        return _openai(spec.removeprefix("openai:"), base_url, kw)
    if spec.startswith("scripted:"):
        return scripted_from_file(spec.removeprefix("scripted:"))
    if spec == "demo":
        return demo_backend(**kw)
    if spec.startswith("keye:"):
        return _keye(spec.removeprefix("keye:"), None, random_weights, kw)
    path = Path(spec).expanduser()
    if path.exists():
        if _is_keye_dir(path):
            return _keye(None, path, random_weights, kw)
        if path.suffix == ".gguf" or path.is_dir():
            from keye_agent.backends.transformers import TransformersBackend

            return TransformersBackend(path, **kw)
        raise ConfigError(f"{path} is neither a .gguf file nor a checkpoint directory")
    if "/" in spec or spec.endswith(".gguf"):
        raise ConfigError(f"model path not found: {spec}")
    raise ConfigError(f"unknown model {spec!r}; expected one of: {', '.join(FORMS)}",
                      hint=f"for a model behind an OpenAI-compatible server write --model openai:{spec}")


def _openai(name: str, base_url: str | None, kw: dict[str, Any]) -> ModelBackend:
    if not name:
        raise ConfigError("openai: needs a model name, e.g. openai:qwen3-8b")
    from keye_agent.backends.openai import OpenAIBackend

    url = base_url or os.environ.get("OPENAI_BASE_URL")
    return OpenAIBackend(name, **({"base_url": url} if url else {}), **kw)


def demo_backend(**kw: Any) -> ModelBackend:
    """SmolLM2-135M-Instruct on the CPU with constrained tool calls, at most one call per turn (a 135M model
    otherwise repeats its call). Fetched on first use; for offline smoke runs, not for real work."""
    from keye_agent.backends.transformers import TransformersBackend

    from .demo_model import ensure_demo_model

    opts: dict[str, Any] = {"constrained": True, "parallel_tool_calls": False, "name": DEMO_NAME, **kw}
    return TransformersBackend(ensure_demo_model(), **opts)


def _is_keye_dir(path: Path) -> bool:
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.is_file()):
        return False
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return "keye" in str(data.get("model_type", "")).lower() or any(
        "keye" in str(a).lower() for a in data.get("architectures") or ())


def _keye(preset: str | None, path: Path | None, random_weights: bool, kw: dict[str, Any]) -> ModelBackend:
    try:
        from keye_agent.backends.keye import KeyeBackend  # type: ignore[import-not-found]
    except ImportError as e:
        raise ConfigError(f"the Keye backend is not available in this installation ({e})",
                          hint="use --model openai:NAME against a server running Keye-VL-2.0, or --model demo") from None
    if path is not None:
        return KeyeBackend(path, random_weights=random_weights, **kw)
    return KeyeBackend.from_preset(preset, random_weights=random_weights, **kw)


def scripted_from_file(path: str | Path) -> ModelBackend:
    """A replay backend from a JSONL file, for tests and replays (it is not a model and never claims to be).

    The file is either a saved trajectory (its model turns are replayed in order), or one turn per line: a JSON
    string (raw model text, parsed like a local model's output) or an object with :class:`AssistantTurn` fields.
    """
    from keye_agent.backends.scripted import ScriptedBackend

    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read script {p}: {e.strerror}") from e
    first = next((ln for ln in lines if ln.strip()), "")
    if first.startswith('{"type": "header"') or first.startswith('{"type":"header"'):
        return ScriptedBackend.from_trajectory(Trajectory.load(p))
    items: list[AssistantTurn | str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            items.append(value if isinstance(value, str) else AssistantTurn.model_validate(value))
        except ValueError as e:
            raise ConfigError(f"not a scripted turn: {e}", file=str(p), line=n,
                              hint='each line is a JSON string (raw model text) or an object like {"text": "..."}') from e
    return ScriptedBackend(items, name=f"scripted-replay:{p.name}")
