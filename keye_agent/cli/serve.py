"""`keye-agent serve`: one model behind an OpenAI-compatible HTTP API (:mod:`keye_agent.serve`).

    keye-agent serve --model keye:/models/Keye-VL-2.0 --port 8000 --max-batch 32
    keye-agent serve --model keye:tiny --random-weights          # plumbing checks on a CPU
    KEYE_SERVE_KEY=... keye-agent serve --model demo --api-key-env KEYE_SERVE_KEY

Every option (the model spec, the key's variable, --max-batch against the backend) is checked before the model
loads.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer
from rich.console import Console

from keye_agent.backends.specs import ModelSpec, load_model
from keye_agent.errors import ConfigError

from .setup import model_options


def batch_options(spec: ModelSpec, max_batch: int) -> dict[str, Any]:
    """The backend keywords for ``--max-batch``: passed on to a backend that batches (its constructor takes
    ``max_batch``); more than 1 for any other is a :class:`ConfigError`."""
    if max_batch == 1:
        return {}
    if spec.kind == "keye":
        from keye_agent.backends.keye import KeyeBackend

        if "max_batch" in inspect.signature(KeyeBackend).parameters:
            return {"max_batch": max_batch}
        raise ConfigError(f"--max-batch {max_batch}: this installation's Keye backend serves one request at a time "
                          "(it has no continuous batching)", hint="leave --max-batch at 1")
    raise ConfigError(f"--max-batch {max_batch}: the {spec.kind} backend serves one request at a time",
                      hint="--max-batch applies to Keye models (keye:PRESET or a Keye checkpoint directory); "
                           "an OpenAI-compatible upstream batches on its own")


def serve(
    model: Annotated[str, typer.Option("--model", "-m", envvar="KEYE_AGENT_MODEL", help=(
        "The model to serve: keye:PRESET or a Keye checkpoint directory, demo, a .gguf file, a transformers "
        "checkpoint directory, or openai:NAME (with --base-url) to relay another server."))],
    host: Annotated[str, typer.Option("--host", help="Address to bind; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to bind.")] = 8000,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help=(
        "Keye models: most sequences decoded together (continuous batching, where the backend has it)."))] = 1,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help=(
        "Name of an environment variable holding the bearer key every /v1 request must send."))] = None,
    served_name: Annotated[str | None, typer.Option("--served-model-name", help=(
        "The model name clients ask for (default: the backend's name, e.g. keye:tiny)."))] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help=(
        "Most requests in flight (generating or waiting); more get HTTP 429 with Retry-After."))] = 64,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", min=0.001, help="Largest request body (413 past it).")] = 32.0,
    default_max_tokens: Annotated[int, typer.Option("--default-max-tokens", min=1, help=(
        "Answer length when a request sets no max_tokens."))] = 4096,
    base_url: Annotated[str | None, typer.Option("--base-url", envvar="OPENAI_BASE_URL", help=(
        "openai:NAME only: the upstream server's API root."))] = None,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Keye presets: random weights (plumbing checks).")] = False,
    constrained: Annotated[bool | None, typer.Option("--constrained/--unconstrained", help=(
        "Local models: hold tool calls to the schemas with xgrammar (default on)."), show_default=False)] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level.")] = "info",
) -> None:
    """Serve a model over an OpenAI-compatible API: /v1/chat/completions, /v1/models, /health."""
    from keye_agent.serve import ServeConfig, create_app, is_loopback, run_server
    from keye_agent.serve.auth import key_from_env

    err = Console(stderr=True)
    mopts = model_options(model, base_url, random_weights, constrained)
    extra = batch_options(mopts.spec, max_batch)
    key = key_from_env(api_key_env) if api_key_env else None
    if not is_loopback(host) and key is None:
        err.print(f"[yellow]warning: serving on {host} without --api-key-env: anyone who can reach this address can "
                  "use the model[/]")
    with err.status(f"loading the model {mopts.spec.text}"):
        backend = load_model(mopts.spec, base_url=mopts.base_url, random_weights=mopts.random_weights,
                             constrained=mopts.constrained, **extra)
    cfg = ServeConfig(model_name=served_name, max_queue=max_queue, max_body_bytes=int(max_body_mb * 2**20),
                      default_max_tokens=default_max_tokens, api_key=key)
    app = create_app(backend, cfg)
    shown = f"[{host}]" if ":" in host else host
    err.print(f"serving {app.state.model_name!r} on http://{shown}:{port}/v1"
              + (f" (bearer key from ${api_key_env})" if key else ""), highlight=False)
    run_server(app, host, port, log_level=log_level)
