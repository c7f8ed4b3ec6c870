"""Fixtures for the sandbox tests: the real Docker engine and the real image (`make test` sets both up)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from keye_agent.errors import SandboxError
from keye_agent.sandboxes import DockerSandbox, default_image
from keye_agent.sandboxes._docker import docker_client, image_exists
from keye_agent.sandboxes.owner import list_sandboxes


def my_containers(pid: int | None = None) -> list[str]:
    """Names of sandbox containers owned by ``pid`` (default: this test process)."""
    pid = os.getpid() if pid is None else pid
    return [c.name for c in list_sandboxes() if c.owner_pid == pid]


@pytest.fixture(scope="session")
def engine() -> None:
    """Fail (not skip) with the fix when the engine or the image is missing: these tests are part of `make test`."""
    try:
        docker_client()
    except SandboxError as e:
        pytest.fail(f"{e}; run `bash scripts/setup_docker.sh`")
    if not image_exists(default_image()):
        pytest.fail(f"sandbox image {default_image()} missing; run `python -m keye_agent.sandboxes build`")


@pytest.fixture(scope="module")
def shared_sandbox(engine: None) -> Iterator[DockerSandbox]:
    """One sandbox for the tests of a module that do not break it."""
    with DockerSandbox() as sb:
        yield sb


@pytest.fixture
def fresh_sandbox(engine: None) -> Iterator[DockerSandbox]:
    """A sandbox of its own, closed after the test; the test then checks no container of ours is left."""
    sb = DockerSandbox()
    sb.start()
    yield sb
    sb.close()


@pytest.fixture(scope="module", autouse=True)
def no_leftovers() -> Iterator[None]:
    """After each module of this folder (its sandboxes closed), this process owns no sandbox container."""
    yield
    try:
        left = my_containers()
    except SandboxError:
        return
    assert left == [], f"sandbox containers left behind: {left}"
