"""`SandboxConfig`: every limit and setting of a sandbox, secure by default.

Defaults (each can be changed; `DockerSandbox` checks inside the container that each one took effect):

=====================  ===========================  ===========================================================
setting                default                      what it does
=====================  ===========================  ===========================================================
network                False                        ``--network none``: only a loopback interface
read_only_root         True                         the image's filesystem is mounted read-only
tmp_size               64 MiB                       /tmp is a tmpfs of this size (nosuid, nodev)
workspace_size         256 MiB                      /workspace (the working directory) is a tmpfs of this size
user                   1000:1000                    the unprivileged ``sandbox`` user of the image
cap_add                ()                           all capabilities are dropped; these are added back
no_new_privileges      True                         setuid binaries cannot raise privileges
pids_limit             128                          processes and threads in the container
memory                 512 MiB                      memory cgroup limit (tmpfs pages count against it)
memory_swap            None (= memory)              memory + swap; equal to memory means no swap at all
cpus                   1.0                          CFS quota, in cores
timeout_s              30 s                         wall-clock limit of one call; the kernel is then restarted
max_output_bytes       1 MiB                        per stream and call; head and tail are kept past it
=====================  ===========================  ===========================================================

Files in /tmp and /workspace live in memory and count against ``memory``. On timeout, out-of-memory or a crash
the Python kernel is restarted (variables lost) but files stay; the container itself is removed by `close()`,
when its owner process exits or dies (``exit_on_disconnect``), or by the reaper of the next start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from keye_agent.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(value: int | str, what: str = "size") -> int:
    """Bytes from an int or a string such as ``"512m"``, ``"1.5GiB"``, ``"65536"`` (binary units)."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a size such as '512m', got {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise ConfigError(f"{what}: cannot read {value!r} as a size", hint="use bytes or e.g. '64m', '1g'")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ConfigError(f"{what} must be positive, got {value!r}")
    return n


@dataclass(frozen=True)
class SandboxConfig:
    """Settings of one sandbox. Sizes accept bytes or strings like ``"512m"``; they are stored as bytes."""

    image: str | None = None
    """Image tag; None means the image built from the current recipe (`keye-agent sandbox build`)."""
    network: bool = False
    """Give the container a network (Docker's default bridge). Off: only loopback."""
    read_only_root: bool = True
    """Mount the image's root filesystem read-only; only /tmp and /workspace are writable."""
    tmp_size: int | str = "64m"
    """Size of the /tmp tmpfs."""
    workspace_size: int | str = "256m"
    """Size of the /workspace tmpfs, the working directory whose files persist between calls."""
    user: str = "1000:1000"
    """uid:gid the processes run as."""
    cap_add: tuple[str, ...] = ()
    """Capabilities added back after dropping all of them."""
    no_new_privileges: bool = True
    """Forbid gaining privileges through setuid/setgid binaries or file capabilities."""
    pids_limit: int = 128
    """Maximum number of processes and threads."""
    memory: int | str = "512m"
    """Memory limit of the container."""
    memory_swap: int | str | None = None
    """Memory plus swap; None makes it equal to ``memory`` (no swap)."""
    cpus: float = 1.0
    """CPU quota in cores."""
    timeout_s: float = 30.0
    """Default wall-clock limit of one call."""
    max_output_bytes: int | str = "1m"
    """Per stream (stdout, stderr) and call; past it the head and the tail are kept and the result says so."""
    max_transfer_bytes: int | str = "64m"
    """Largest file `download` returns."""
    start_timeout_s: float = 30.0
    """How long to wait for a new container to report ready."""
    kill_grace_s: float = 10.0
    """Extra time the host waits past a call's timeout before it declares the container unresponsive."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables of the container."""
    labels: dict[str, str] = field(default_factory=dict)
    """Extra Docker labels (the owner labels are always added)."""
    exit_on_disconnect: bool = True
    """End the container as soon as its owner's attach stream closes (the owner died or exited)."""
    reap_on_start: bool = True
    """Remove containers of dead owners before starting a new one."""
    verify_limits: bool = True
    """Check inside the container that every limit took effect, and refuse to start otherwise."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise sizes once, here
        for name in ("tmp_size", "workspace_size", "memory", "max_output_bytes", "max_transfer_bytes"):
            set_(self, name, parse_size(getattr(self, name), name))
        if self.memory_swap is not None:
            set_(self, "memory_swap", parse_size(self.memory_swap, "memory_swap"))
            if self.memory_swap < self.memory:
                raise ConfigError(f"memory_swap ({self.memory_swap}) must be at least memory ({self.memory})")
        if self.memory < 16 * 2**20:
            raise ConfigError(f"memory {self.memory} bytes is too small for Python; use at least 16m")
        if not 0.01 <= self.cpus <= 1024:
            raise ConfigError(f"cpus must be between 0.01 and 1024, got {self.cpus}")
        if self.pids_limit < 8:
            raise ConfigError(f"pids_limit {self.pids_limit} is too small; the sandbox needs at least 8")
        if self.timeout_s <= 0 or self.start_timeout_s <= 0:
            raise ConfigError("timeout_s and start_timeout_s must be positive")
        if not re.fullmatch(r"\d+:\d+", self.user):
            raise ConfigError(f"user must be 'uid:gid' with numbers, got {self.user!r}")
        if self.max_output_bytes < 1024:
            raise ConfigError("max_output_bytes must be at least 1k")
        set_(self, "cap_add", tuple(c.upper().removeprefix("CAP_") for c in self.cap_add))

    @property
    def uid(self) -> int:
        return int(self.user.split(":")[0])

    @property
    def gid(self) -> int:
        return int(self.user.split(":")[1])

    @property
    def swap_total(self) -> int:
        """Memory plus swap in bytes (equal to ``memory`` unless ``memory_swap`` is set)."""
        return int(self.memory_swap if self.memory_swap is not None else self.memory)

    def with_(self, **changes: Any) -> SandboxConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def from_options(cls, **options: Any) -> SandboxConfig:
        """Build from loose options (YAML, CLI); unknown keys are a `ConfigError` that lists the known ones."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown sandbox option(s) {unknown}; known: {sorted(known)}")
        if "cap_add" in options:
            options["cap_add"] = tuple(options["cap_add"])
        return cls(**options)
