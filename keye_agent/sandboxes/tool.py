"""The ``run_code`` tool: the agent's way into a `DockerSandbox`.

Registered as the built-in ``run_code`` through the entry-point group ``keye_agent.tools``
(``run_code = "keye_agent.sandboxes.tool:make_run_code"``), so a YAML registry's ``builtin: run_code`` and the
CLI's ``--sandbox`` find it. One tool owns one sandbox, started on the first call and kept for the session:
variables and files persist between calls. Images the code writes (PNG, JPEG, GIF, WebP under /workspace) come
back as attachments the model can see.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from keye_agent.errors import SandboxError, ToolExecutionError, redact
from keye_agent.tools import Tool, ToolOutput
from keye_agent.types import ImagePart

from .config import SandboxConfig
from .docker_sandbox import DockerSandbox
from .result import ExecResult

_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}

DESCRIPTION = (
    "Run code in a persistent, isolated sandbox (Debian, Python 3.11 with numpy, pandas, matplotlib; no network). "
    "language='python' runs in one long-lived interpreter: variables and imports persist between calls, and a bare "
    "expression on the last line is printed. language='bash' runs a shell command. The working directory "
    "/workspace keeps files between calls. To show a plot, save it as a PNG under /workspace (e.g. "
    "plt.savefig('plot.png')); saved images are returned to you. Output is cut when very long; on timeout the "
    "interpreter restarts and its variables are lost."
)


class RunCodeSession:
    """The sandbox behind one ``run_code`` tool, started on first use. ``close()`` removes the container."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        sandbox: DockerSandbox | None = None,
        max_chars: int = 20_000,
        max_images: int = 4,
        max_image_bytes: int = 5 * 2**20,
    ) -> None:
        self.config = config
        self.max_chars = max_chars
        self.max_images = max_images
        self.max_image_bytes = max_image_bytes
        self._sandbox = sandbox
        self._owns_sandbox = sandbox is None
        self._lock = threading.Lock()
        self._lost_sandbox_note: str | None = None

    @property
    def sandbox(self) -> DockerSandbox:
        with self._lock:
            if self._sandbox is None or not self._sandbox.started:
                self._sandbox = DockerSandbox(self.config).start()
                self._owns_sandbox = True
            return self._sandbox

    def __call__(self, code: str, language: str = "python", timeout_s: float | None = None) -> ToolOutput:
        try:
            result = self.sandbox.run(code, language=language, timeout=timeout_s)
        except SandboxError as e:
            # The container is gone (unresponsive, killed from outside): the next call starts a fresh one.
            self._lost_sandbox_note = (
                "the previous sandbox was lost, so this is a fresh one: variables and files are gone"
            )
            raise ToolExecutionError(f"the sandbox failed: {e}", tool="run_code") from e
        note, self._lost_sandbox_note = self._lost_sandbox_note, None
        return ToolOutput(content=redact(self.render(result, note)), attachments=self._images(result))

    def render(self, r: ExecResult, note: str | None = None) -> str:
        """The result as the model reads it: status line, then stdout, stderr, files and notes."""
        if r.timed_out:
            status = f"TIMED OUT after {r.duration_s:.1f} s"
        elif r.oom_killed:
            status = "KILLED: out of memory (exit 137)"
        elif r.ok:
            status = "ok"
        else:
            status = f"ERROR (exit code {r.exit_code})" + (f": {r.error}" if r.error else "")
        parts = [f"[{r.language} | {status} | {r.duration_s:.2f} s]"]
        budget = self.max_chars
        for label, text, cut in (("stdout", r.stdout, r.stdout_truncated), ("stderr", r.stderr, r.stderr_truncated)):
            if not text:
                continue
            if len(text) > budget // 2:
                half = budget // 4
                text = f"{text[:half]}\n... [{len(text) - 2 * half} characters cut] ...\n{text[-half:]}"
                cut = True
            parts.append(f"{label}{' (truncated)' if cut else ''}:\n{text.rstrip()}")
        if not r.stdout and not r.stderr:
            parts.append("(no output)")
        if r.files:
            parts.append("files created or changed: " + ", ".join(r.files))
        for n in ([note] if note else []) + r.notes:
            parts.append(f"note: {n}")
        return "\n".join(parts)

    def _images(self, r: ExecResult) -> list[ImagePart]:
        images = []
        for path in r.files:
            mime = _IMAGE_TYPES.get(path[path.rfind(".") :].lower()) if "." in path else None
            if mime is None or len(images) >= self.max_images:
                continue
            try:
                data = self.sandbox.download(path)
            except SandboxError:
                continue  # deleted again, or over the transfer limit: the file list still names it
            if 0 < len(data) <= self.max_image_bytes:
                images.append(ImagePart(data=base64.b64encode(data).decode(), mime_type=mime))
        return images

    def close(self) -> None:
        with self._lock:
            if self._sandbox is not None and self._owns_sandbox:
                self._sandbox.close()
            self._sandbox = None


def make_run_code(**options: Any) -> Tool:
    """Build the ``run_code`` tool.

    Options: any `SandboxConfig` field (``memory="1g"``, ``timeout_s=60``, ``network=True``, ...), plus
    ``sandbox`` (an existing `DockerSandbox` to use instead of starting one), ``max_chars`` (longest text returned
    to the model, default 20000), ``max_images`` (default 4) and ``name`` (default ``"run_code"``).
    ``tool.close()`` (or closing the registry that holds it) removes the container when the agent is done (it is
    also removed at interpreter exit); ``tool.metadata["session"]`` is the `RunCodeSession`, for inspection.
    """
    sandbox = options.pop("sandbox", None)
    name = options.pop("name", "run_code")
    extra = {k: options.pop(k) for k in ("max_chars", "max_images", "max_image_bytes") if k in options}
    config = sandbox.config if sandbox is not None else SandboxConfig.from_options(**options)
    session = RunCodeSession(config, sandbox=sandbox, **extra)
    parameters = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "description": "The code to run."},
            "language": {
                "type": "string",
                "enum": ["python", "bash"],
                "default": "python",
                "description": "python (persistent interpreter) or bash (a shell command).",
            },
            "timeout_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": config.timeout_s,
                "description": f"Wall-clock limit in seconds (default and maximum {config.timeout_s:g}).",
            },
        },
        "required": ["code"],
        "additionalProperties": False,
    }
    return Tool(
        name=name,
        description=DESCRIPTION,
        parameters=parameters,
        fn=session,
        # The sandbox enforces the call's timeout itself; the registry's limit only catches a stuck engine
        # (first start included).
        timeout_s=config.timeout_s + config.kill_grace_s + config.start_timeout_s,
        retries=0,  # running code twice is not a safe retry
        mutates_state=True,  # calls must run one at a time and in order: the interpreter's state depends on it
        requires_approval=False,  # isolated: nothing outside the container changes
        metadata={"session": session, "sandbox_config": config},
        on_close=session.close,
    )
