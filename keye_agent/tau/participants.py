"""Who plays a run's agent and user, from a spec: ``oracle`` (gold actions), ``idle`` (an agent that does nothing),
``scripted:FILE``, or a model spec (``openai:NAME``, ``keye:...``, see :func:`keye_agent.backends.parse_model_spec`).
One home for the command line and for Ray workers, which rebuild the participants from the same spec on their
node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keye_agent.errors import ConfigError
from keye_agent.types import ModelBackend

from .oracle import IdleAgent, OracleAgent, OracleUser
from .schema import Task

SCRIPTED_SPECS = ("oracle", "idle")

BackendFactory = Callable[[Task, int], ModelBackend]
Loader = Callable[[str, "str | None"], ModelBackend]

_MODELS: dict[tuple[str, str | None], ModelBackend] = {}
"""Models built in this process, by (spec, base URL): agent and user on the same model share one instance, and a
Ray worker builds each model once for all the simulations it runs."""


def check_spec(spec: str, side: str) -> None:
    """Refuse a bad spec before anything loads (the model spec's own errors name the fix)."""
    if spec == "idle" and side != "agent":
        raise ConfigError("'idle' is an agent, not a user", hint="--user-model takes oracle or a model spec")
    if spec not in SCRIPTED_SPECS:
        from keye_agent.backends import parse_model_spec

        parse_model_spec(spec)


def load_backend(spec: str, base_url: str | None) -> ModelBackend:
    from keye_agent.backends import load_model, parse_model_spec

    return load_model(parse_model_spec(spec), base_url=base_url)


def participant_factory(spec: str, side: str, base_url: str | None = None, *,
                        loader: Loader | None = None) -> BackendFactory:
    """(task, trial) -> backend for ``side`` ("agent" or "user"). Scripted participants are made per simulation (a
    script is consumed as it plays); a model is built once per process (``loader`` builds it, e.g. under a
    spinner)."""
    check_spec(spec, side)
    if spec == "oracle":
        return (lambda t, k: OracleAgent(t)) if side == "agent" else (lambda t, k: OracleUser(t))
    if spec == "idle":
        return lambda t, k: IdleAgent(t)
    if spec.startswith("scripted:"):
        return lambda t, k: load_backend(spec, base_url)
    key = (spec, base_url)
    if key not in _MODELS:
        _MODELS[key] = (loader or load_backend)(spec, base_url)
    model = _MODELS[key]
    return lambda t, k: model


def judge_backend(spec: str | None, loader: Loader | None = None) -> Any:
    """The model that judges NL assertions, or None."""
    if spec is None:
        return None
    from keye_agent.backends import parse_model_spec

    parse_model_spec(spec)
    return (loader or load_backend)(spec, None)
