"""``keye-agent serve``: an OpenAI-compatible HTTP server over one model backend (the local Keye model, the demo
model, any spec :func:`keye_agent.backends.load_model` takes), for any OpenAI client: the ``openai`` SDK, LiteLLM,
tau2-bench's harness, our own ``OpenAIBackend``.

    keye-agent serve --model keye:/models/Keye-VL-2.0 --port 8000
    keye-agent serve --model demo --api-key-env KEYE_SERVE_KEY

Modules: :mod:`.request` (a body into our messages and settings, every problem a 400 naming the parameter),
:mod:`.messages` (chat messages), :mod:`.response` (completion, SSE chunks, error objects), :mod:`.generation`
(one request through the backend's ``astream``; disconnects cancel), :mod:`.limits` (body size, queue),
:mod:`.auth` (the bearer key), :mod:`.app` (the Starlette app), :mod:`.server` (uvicorn).
"""

from .app import ServeConfig, create_app
from .server import is_loopback, run_server

__all__ = ["ServeConfig", "create_app", "is_loopback", "run_server"]
