"""`DockerSandbox`: a stateful, locked-down Python (and shell) session in a Docker container.

Example::

    from keye_agent.sandboxes import DockerSandbox

    with DockerSandbox() as sb:
        sb.run("x = 21")
        print(sb.run("x * 2").stdout)        # 42
        sb.upload("data.csv", b"a,b\\n1,2\\n")
        print(sb.run_shell("wc -l data.csv").stdout)

A call goes over the container's attach stream to the supervisor (PID 1) and on to a long-lived Python kernel,
so no `docker exec` is paid per call; see `_inside.py` for the in-container side.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import posixpath
import secrets
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import docker.errors
import requests

from keye_agent.errors import SandboxError

from ._channel import Channel, ChannelClosed
from ._docker import docker_client, engine_errors
from .config import SandboxConfig
from .owner import owner_labels, reap_orphans, remove_container
from .recipe import default_image
from .result import ExecResult
from .verify import check_limits

# The in-container program: its parts joined into one `python3 -c` source, the supervisor (_inside.py) last.
_INSIDE_PARTS = ("_inside_facts.py", "_inside_util.py", "_inside_kernel.py", "_inside.py")
_INSIDE_SOURCE = "\n".join((Path(__file__).parent / name).read_text() for name in _INSIDE_PARTS)
_counter = itertools.count(1)
_PY = {"python", "python3", "py"}
_SHELL = {"bash", "sh", "shell"}


def _cleanup(container_id: str, channel: Channel | None, owner_pid: int) -> None:
    # Runs at close(), at garbage collection and at interpreter exit (weakref.finalize), never twice.
    if os.getpid() != owner_pid:
        return  # a forked child exiting must not remove its parent's containers
    if channel is not None:
        channel.close()
    try:
        remove_container(container_id)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        pass  # the engine is gone too; the reaper of the next run removes the container


class DockerSandbox:
    """A sandbox container with a persistent Python kernel. Thread-safe: calls on one sandbox run one at a time.

    ``DockerSandbox(config)`` or ``DockerSandbox(memory="1g", timeout_s=60)``. The container starts on `start`,
    on ``with``, or on the first call.
    """

    def __init__(self, config: SandboxConfig | None = None, **overrides: Any) -> None:
        base = config or SandboxConfig()
        self.config = base.with_(**overrides) if overrides else base
        self.container_id: str | None = None
        self.name: str | None = None
        self.facts: dict[str, Any] = {}
        self._channel: Channel | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = False

    # ---- lifecycle ----

    def __enter__(self) -> DockerSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def started(self) -> bool:
        return self._channel is not None and not self._closed

    def start(self) -> DockerSandbox:
        """Create and start the container, wait for its supervisor, check its limits. Idempotent."""
        with self._lock:
            if self._closed:
                raise SandboxError("this sandbox was closed; create a new one")
            if self._channel is None:
                with engine_errors("cannot start a sandbox"):
                    self._start()
        return self

    def _start(self) -> None:
        cfg = self.config
        client = docker_client()
        if cfg.reap_on_start:
            reap_orphans()
        image = cfg.image or default_image()
        self.name = f"keye-sbx-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
        params = {"max_output_bytes": cfg.max_output_bytes}
        try:
            config = client.api.create_container_config(
                image,
                ["python3", "-u", "-B", "-c", _INSIDE_SOURCE, json.dumps(params)],
                user=cfg.user,
                working_dir="/workspace",
                stdin_open=True,
                tty=False,
                environment=self._environment(),
                labels={**cfg.labels, **owner_labels(), "keye.image": image},
                host_config=self._host_config(client),
            )
            # StdinOnce: the engine closes the supervisor's stdin when our attach stream ends (we died), and the
            # supervisor then exits, which ends and removes the container.
            config["StdinOnce"] = cfg.exit_on_disconnect
            created = client.api.create_container_from_config(config, name=self.name)
        except docker.errors.ImageNotFound as e:
            raise SandboxError(
                f"sandbox image {image!r} not found",
                hint="build it with `keye-agent sandbox build` (or `python -m keye_agent.sandboxes build`)",
            ) from e
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot create the sandbox container: {e.explanation or e}") from e
        cid = created["Id"]
        self.container_id = cid
        self._finalizer = weakref.finalize(self, _cleanup, cid, None, os.getpid())
        channel: Channel | None = None
        try:
            sock = client.api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            # The SDK hands back a SocketIO wrapper; the raw socket gives sendall/recv with timeouts.
            raw = getattr(sock, "_sock", sock)
            channel = Channel(raw)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _cleanup, cid, channel, os.getpid())
            client.api.start(cid)
            hello = channel.recv(time.monotonic() + cfg.start_timeout_s)
        except (TimeoutError, ChannelClosed, docker.errors.APIError) as e:
            why = self._death_note(channel)
            self._finalizer()
            raise SandboxError(f"sandbox container {self.name} did not start: {e}{why}") from e
        self._channel = channel
        self.facts = hello.get("facts", {})
        if cfg.verify_limits:
            problems = check_limits(self.facts, cfg)
            if problems:
                self.close()
                raise SandboxError(
                    "refusing to start: limits did not take effect in the container:\n  - " + "\n  - ".join(problems),
                    hint="fix the engine (see scripts/setup_docker.sh) or relax the setting in SandboxConfig",
                )

    def _environment(self) -> dict[str, str]:
        threads = str(max(1, math.ceil(self.config.cpus)))
        env = {
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": "/tmp/matplotlib",
            "PYTHONDONTWRITEBYTECODE": "1",
            # BLAS and OpenMP size their pools by the host's cores, which would spend the pids limit.
            "OPENBLAS_NUM_THREADS": threads,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }
        return {**env, **self.config.env}

    def _host_config(self, client: Any) -> dict[str, Any]:
        cfg = self.config
        tmpfs = {
            "/tmp": f"rw,nosuid,nodev,noexec,size={cfg.tmp_size},mode=1777",
            "/workspace": f"rw,nosuid,nodev,exec,size={cfg.workspace_size},uid={cfg.uid},gid={cfg.gid},mode=0755",
        }
        return client.api.create_host_config(
            network_mode="bridge" if cfg.network else "none",
            read_only=cfg.read_only_root,
            tmpfs=tmpfs,
            cap_drop=["ALL"],
            cap_add=list(cfg.cap_add) or None,
            security_opt=["no-new-privileges"] if cfg.no_new_privileges else None,
            pids_limit=cfg.pids_limit,
            mem_limit=cfg.memory,
            memswap_limit=cfg.swap_total,
            cpu_period=100_000,
            cpu_quota=int(cfg.cpus * 100_000),
            auto_remove=True,
            ipc_mode="private",
        )

    def _death_note(self, channel: Channel | None) -> str:
        note = ""
        if channel is not None and channel.stderr_tail:
            note = "; container said: " + channel.stderr_tail.decode(errors="replace")[-1000:]
        return note

    def close(self) -> None:
        """Kill and remove the container. Idempotent; also done at garbage collection and interpreter exit."""
        self._closed = True
        if self._finalizer is not None:
            self._finalizer()
        self._channel = None

    # ---- calls ----

    def _call(self, request: dict[str, Any], wait_s: float) -> dict[str, Any]:
        if self._closed:
            raise SandboxError("this sandbox was closed; create a new one")
        if self._channel is None:
            self.start()
        with self._lock:
            channel = self._channel
            if channel is None or self._closed:
                raise SandboxError("this sandbox was closed; create a new one")
            request["id"] = next(self._ids)
            try:
                channel.send(request)
                while True:
                    reply = channel.recv(time.monotonic() + wait_s)
                    if reply.get("id") == request["id"]:
                        return reply
            except TimeoutError as e:
                self._kill()
                raise SandboxError(
                    f"sandbox {self.name} did not answer within {wait_s:.0f} s; it was removed and its state is lost"
                ) from e
            except (ChannelClosed, OSError) as e:
                note = self._death_note(channel)
                self._kill()
                raise SandboxError(f"sandbox {self.name} ended unexpectedly ({e}){note}; its state is lost") from e

    def _kill(self) -> None:
        self._closed = True
        if self._finalizer is not None:
            self._finalizer()
        self._channel = None

    def run(self, code: str, language: str = "python", timeout: float | None = None) -> ExecResult:
        """Run ``code`` in the persistent Python kernel (or, for ``language="bash"``, in a fresh shell).

        Globals, imports and files persist between calls. A bare expression on the last line is echoed like in a
        notebook. On timeout the kernel and every process it started are killed, a fresh kernel is started, and
        the result has ``timed_out`` and ``state_lost`` set.
        """
        lang = language.lower()
        if lang in _SHELL:
            return self.run_shell(code, timeout=timeout)
        if lang not in _PY:
            raise SandboxError(f"unsupported language {language!r}", hint="use 'python' or 'bash'")
        limit = self._timeout(timeout)
        t0 = time.perf_counter()
        reply = self._call({"op": "run", "code": code, "timeout": limit}, limit + self.config.kill_grace_s)
        return self._result(reply, "python", time.perf_counter() - t0, limit)

    def run_shell(self, cmd: str, timeout: float | None = None) -> ExecResult:
        """Run ``cmd`` with ``bash -c`` in /workspace; on timeout its process group is killed."""
        limit = self._timeout(timeout)
        t0 = time.perf_counter()
        reply = self._call({"op": "shell", "cmd": cmd, "timeout": limit}, limit + self.config.kill_grace_s)
        return self._result(reply, "bash", time.perf_counter() - t0, limit)

    def _timeout(self, timeout: float | None) -> float:
        limit = self.config.timeout_s if timeout is None else float(timeout)
        if not limit > 0:
            raise SandboxError(f"timeout must be positive, got {timeout!r}")
        return limit

    def _result(self, reply: dict[str, Any], language: str, duration: float, limit: float) -> ExecResult:
        if "failure" in reply:
            raise SandboxError(f"sandbox supervisor failed: {reply['failure']}")
        notes = []
        if reply.get("lost_note"):
            notes.append(f"{reply['lost_note']}; it was restarted, so earlier variables and imports are gone")
        if reply.get("state_lost") and not reply.get("lost_note"):
            cause = "timed out" if reply.get("timed_out") else (reply.get("error") or "crashed")
            notes.append(
                f"the Python kernel {cause} and was restarted: variables, imports and objects from earlier calls "
                "are gone; files in /workspace remain"
            )
        return ExecResult(
            stdout=reply.get("stdout", ""),
            stderr=reply.get("stderr", ""),
            exit_code=int(reply.get("exit_code", 1)),
            duration_s=duration,
            language=language,
            stdout_truncated=bool(reply.get("stdout_truncated")),
            stderr_truncated=bool(reply.get("stderr_truncated")),
            timed_out=bool(reply.get("timed_out")),
            oom_killed=bool(reply.get("oom_killed")),
            state_lost=bool(reply.get("state_lost")),
            error=reply.get("error"),
            files=list(reply.get("files", [])),
            notes=notes,
        )

    # ---- files ----

    @staticmethod
    def _inside_path(path: str) -> str:
        full = posixpath.normpath(posixpath.join("/workspace", path))
        if not (full.startswith("/workspace/") or full.startswith("/tmp/")):
            raise SandboxError(f"path {path!r} is outside /workspace and /tmp", hint="use a path under /workspace")
        return full

    def upload(self, path: str, data: bytes | str, mode: int = 0o644) -> str:
        """Write ``data`` to ``path`` (relative to /workspace, or under /tmp). Returns the absolute path."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if len(raw) > int(self.config.max_transfer_bytes):
            raise SandboxError(
                f"upload of {len(raw)} bytes is over max_transfer_bytes ({self.config.max_transfer_bytes})"
            )
        full = self._inside_path(path)
        req = {"op": "upload", "path": full, "data": base64.b64encode(raw).decode(), "mode": mode}
        reply = self._call(req, self.config.timeout_s + self.config.kill_grace_s)
        if "failure" in reply:
            raise SandboxError(f"upload to {full} failed: {reply['failure']}")
        return reply["path"]

    def download(self, path: str) -> bytes:
        """The contents of ``path`` (relative to /workspace, or under /tmp)."""
        full = self._inside_path(path)
        req = {"op": "download", "path": full, "max_bytes": int(self.config.max_transfer_bytes)}
        reply = self._call(req, self.config.timeout_s + self.config.kill_grace_s)
        if "failure" in reply:
            raise SandboxError(f"download of {full} failed: {reply['failure']}")
        return base64.b64decode(reply["data"])

    def ping(self) -> float:
        """Round-trip time of an empty request to the supervisor, in seconds."""
        t0 = time.perf_counter()
        self._call({"op": "ping"}, self.config.start_timeout_s)
        return time.perf_counter() - t0

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._channel else "not started")
        return f"DockerSandbox(name={self.name!r}, {state})"
