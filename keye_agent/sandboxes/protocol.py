"""`Sandbox`: what the rest of keye-agent needs from a code sandbox. `DockerSandbox` is the implementation."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .result import ExecResult


@runtime_checkable
class Sandbox(Protocol):
    """A stateful place to run untrusted code: a persistent Python session plus a shell and a working directory."""

    def run(self, code: str, language: str = "python", timeout: float | None = None) -> ExecResult:
        """Run code; Python state persists between calls."""
        ...

    def run_shell(self, cmd: str, timeout: float | None = None) -> ExecResult:
        """Run a shell command in the working directory."""
        ...

    def upload(self, path: str, data: bytes | str, mode: int = 0o644) -> str:
        """Write a file into the sandbox; returns its path there."""
        ...

    def download(self, path: str) -> bytes:
        """Read a file out of the sandbox."""
        ...

    def close(self) -> None:
        """Release the sandbox and everything it holds."""
        ...
