"""Model specs: one string names any model backend (the CLI's ``--model``, ``keye_agent.load_model``).

    load_model("openai:qwen3-8b", base_url="http://localhost:8000/v1")   # any OpenAI-compatible server
    load_model("demo")                                                  # SmolLM2-135M on the CPU (offline)
    load_model("path/to/model.gguf")                                    # a GGUF file through transformers
    load_model("path/to/hf-checkpoint")                                 # a transformers checkpoint directory
    load_model("keye:tiny", random_weights=True)                        # a Keye preset (keye backend)
    load_model("path/to/Keye-VL-2.0")                                   # a Keye-VL-2.0 checkpoint directory

``scripted:FILE.jsonl`` replays recorded turns (a test and replay backend, never a model; see
:func:`scripted_from_file`).

A spec is parsed once (:func:`parse_model_spec`: cheap checks only, nothing loaded, so a typo fails at once) into
a :class:`ModelSpec`; :func:`load_model` builds the backend from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from keye_agent.errors import ConfigError
from keye_agent.types import AssistantTurn, ModelBackend, Trajectory

DEMO_NAME = "demo:SmolLM2-135M-Instruct"
FORMS = ("openai:NAME (with --base-url)", "demo", "a .gguf file", "a transformers checkpoint directory",
         "keye:PRESET", "a Keye checkpoint directory")

SpecKind = Literal["openai", "scripted", "demo", "keye", "transformers"]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. ``name``: the OpenAI model name or the Keye preset; ``path``: a file or directory."""

    kind: SpecKind
    text: str
    name: str | None = None
    path: Path | None = None

    @property
    def local(self) -> bool:
        """Whether the model runs in this process (and so takes ``constrained``)."""
        return self.kind in ("demo", "keye", "transformers")


def parse_model_spec(spec: str | ModelSpec, *, random_weights: bool = False) -> ModelSpec:
    """The :class:`ModelSpec` that ``spec`` names, or a :class:`ConfigError` naming the problem and the fix.
    Looks at the file system only; loads nothing."""
    if isinstance(spec, ModelSpec):
        parsed = spec
    else:
        parsed = _parse(spec.strip())
    if random_weights and parsed.kind != "keye":
        raise ConfigError(f"--random-weights applies to Keye models only, not {parsed.text!r}",
                          hint="use --model keye:PRESET --random-weights")
    if parsed.kind == "keye" and parsed.name is not None:
        check_keye_preset(parsed.name, random_weights)
    return parsed


def _parse(spec: str) -> ModelSpec:
    if not spec:
        raise ConfigError("no model given", hint="pass --model, e.g. --model demo or --model openai:NAME")
    if spec.startswith("openai:"):
        name = spec.removeprefix("openai:")
        if not name:
            raise ConfigError("openai: needs a model name, e.g. openai:qwen3-8b")
        return ModelSpec("openai", spec, name=name)
    if spec.startswith("scripted:"):
        path = Path(spec.removeprefix("scripted:")).expanduser()
        if not path.is_file():
            raise ConfigError(f"script not found: {path}", hint="scripted:FILE takes a JSONL file of model turns "
                                                                 "or a saved trajectory")
        return ModelSpec("scripted", spec, path=path)
    if spec == "demo":
        return ModelSpec("demo", spec)
    if spec.startswith("keye:"):
        rest = spec.removeprefix("keye:")
        if Path(rest).expanduser().is_dir():  # keye:DIR is a checkpoint directory too
            return ModelSpec("keye", spec, path=Path(rest).expanduser())
        return ModelSpec("keye", spec, name=rest)
    path = Path(spec).expanduser()
    if path.exists():
        if _is_keye_dir(path):
            return ModelSpec("keye", spec, path=path)
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ConfigError(f"{path} is not a transformers checkpoint (no config.json)",
                                  hint="point --model at a checkpoint directory or a .gguf file")
            return ModelSpec("transformers", spec, path=path)
        if path.suffix == ".gguf":
            return ModelSpec("transformers", spec, path=path)
        raise ConfigError(f"{path} is neither a .gguf file nor a checkpoint directory",
                          hint="give a .gguf file, a checkpoint directory (with config.json), or demo")
    if "/" in spec or spec.endswith(".gguf"):
        raise ConfigError(f"model path not found: {spec}",
                          hint="check the path (relative to the current directory); or use --model demo, "
                               "or --model openai:NAME with --base-url")
    raise ConfigError(f"unknown model {spec!r}; expected one of: {', '.join(FORMS)}",
                      hint=f"for a model behind an OpenAI-compatible server write --model openai:{spec}")


def check_keye_preset(name: str, random_weights: bool) -> None:
    """A Keye preset name must be known, and (presets carry no weights) come with ``random_weights``."""
    try:
        from keye_agent.model.config import PRESETS
    except ImportError:
        return  # no Keye model code here: load_model says so
    if name not in PRESETS:
        raise ConfigError(f"{name!r} is neither a checkpoint directory nor a Keye preset",
                          hint=f"presets: {', '.join(sorted(PRESETS))}; or give the checkpoint's directory")
    if not random_weights:
        raise ConfigError(f"preset {name!r} carries no weights",
                          hint="pass --random-weights (random_weights=True) for plumbing checks, or load a "
                               "checkpoint directory for real answers")


def load_model(spec: str | ModelSpec, base_url: str | None = None, random_weights: bool = False,
               constrained: bool | None = None, **kw: Any) -> ModelBackend:
    """The backend that ``spec`` names. ``constrained`` (local models only) holds tool calls to the schemas with
    xgrammar; None keeps the backend's default. Extra keywords go to the backend's constructor (e.g. ``threads=2``
    for local models, ``api_key`` or ``context_window`` for OpenAI-compatible servers)."""
    s = parse_model_spec(spec, random_weights=random_weights)
    if constrained is not None:
        if not s.local:
            raise ConfigError("--constrained/--unconstrained applies to local models only",
                              hint="OpenAI-compatible servers constrain tool calls themselves (if they can)")
        kw["constrained"] = constrained
    if s.kind == "openai":
        from keye_agent.backends.openai import OpenAIBackend

        url = base_url or os.environ.get("OPENAI_BASE_URL")
        return OpenAIBackend(s.name or "", **({"base_url": url} if url else {}), **kw)
    if s.kind == "scripted":
        return scripted_from_file(s.path or "")
    if s.kind == "demo":
        return demo_backend(**kw)
    if s.kind == "keye":
        return _keye(s, random_weights, kw)
    from keye_agent.backends.transformers import TransformersBackend

    return TransformersBackend(s.path, **kw)


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


def _keye(s: ModelSpec, random_weights: bool, kw: dict[str, Any]) -> ModelBackend:
    try:
        from keye_agent.backends.keye import KeyeBackend  # type: ignore[import-not-found]
    except ImportError as e:
        raise ConfigError(f"the Keye backend is not available in this installation ({e})",
                          hint="use --model openai:NAME against a server running Keye-VL-2.0, or --model demo") from None
    if s.path is not None:
        return KeyeBackend(s.path, random_weights=random_weights, **kw)
    return KeyeBackend.from_preset(s.name or "", random_weights=random_weights, **kw)


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
