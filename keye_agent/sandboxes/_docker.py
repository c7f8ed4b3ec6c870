"""One shared Docker SDK client per process, with a clear error when the engine cannot be reached."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import docker
import docker.errors
import requests

from keye_agent.errors import SandboxError

_lock = threading.Lock()
_client: docker.DockerClient | None = None

ENGINE_HINT = "start the engine with `bash scripts/setup_docker.sh` (as root), or set DOCKER_HOST"


def docker_client() -> docker.DockerClient:
    """The process-wide client (``docker.from_env()``), created on first use; its HTTP pool is thread-safe."""
    global _client
    with _lock:
        if _client is None:
            try:
                client = docker.from_env(timeout=120, max_pool_size=32)
                client.api.ping()
            except docker.errors.DockerException as e:
                raise SandboxError(f"cannot reach the Docker engine: {e}", hint=ENGINE_HINT) from e
            _client = client
        return _client


def image_exists(tag: str) -> bool:
    """Whether the engine has an image with this tag."""
    try:
        docker_client().api.inspect_image(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


@contextlib.contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Turn a lost connection to the engine (which the SDK raises as a `requests` error) into a `SandboxError`."""
    try:
        yield
    except requests.exceptions.RequestException as e:
        raise SandboxError(
            f"{what}: lost the connection to the Docker engine ({type(e).__name__})", hint=ENGINE_HINT
        ) from e
