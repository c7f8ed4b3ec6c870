"""`ExecResult`: what one call in a sandbox produced."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExecResult:
    """Outcome of `DockerSandbox.run` or `run_shell`.

    ``exit_code`` is 0 on success, 1 for a Python exception, ``SystemExit``'s code, 124 on timeout, 137 when the
    out-of-memory killer ended the kernel, 128+N for another signal N. ``files`` are the absolute paths under
    /workspace that the call created or changed. ``state_lost`` says the Python kernel was restarted (timeout,
    crash, out of memory) so earlier variables and imports are gone; files in /workspace survive.
    """

    stdout: str
    stderr: str
    exit_code: int
    duration_s: float
    language: str = "python"
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    oom_killed: bool = False
    state_lost: bool = False
    error: str | None = None
    """One-line summary of the failure (``"ZeroDivisionError: division by zero"``, ``"timed out after 2 s"``)."""
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Things the caller should know, such as why state was lost."""

    @property
    def ok(self) -> bool:
        """True when the code finished with exit code 0 within its time."""
        return self.exit_code == 0 and not self.timed_out
