"""Owner labels on sandbox containers, and the reaper that removes containers whose owner process is gone.

A container is labelled with the host name, the host's boot id, and the owner's pid and start time (clock ticks
since boot, field 22 of /proc/<pid>/stat). The pair (pid, start time) names one process for the life of a boot, so
a recycled pid is never mistaken for the owner. Several processes and agents can share one engine: the reaper
removes only containers whose owner is provably gone, and leaves those of other hosts alone.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass

import docker.errors

from ._docker import docker_client, engine_errors

SANDBOX_LABEL = "keye.sandbox"
L_HOST = "keye.owner.host"
L_BOOT = "keye.owner.boot_id"
L_PID = "keye.owner.pid"
L_START = "keye.owner.start_time"


@functools.cache
def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def process_start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot, or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


def owner_labels(pid: int | None = None) -> dict[str, str]:
    """Labels naming ``pid`` (default: this process) as a container's owner."""
    pid = os.getpid() if pid is None else pid
    start = process_start_time(pid)
    if start is None:
        raise ProcessLookupError(pid)
    return {
        SANDBOX_LABEL: "1",
        L_HOST: socket.gethostname(),
        L_BOOT: boot_id(),
        L_PID: str(pid),
        L_START: start,
    }


def owner_state(labels: dict[str, str]) -> str:
    """``"alive"``, ``"gone"``, or ``"foreign"`` (another host: cannot tell, so never reaped)."""
    if labels.get(L_HOST) != socket.gethostname():
        return "foreign"
    if labels.get(L_BOOT) != boot_id():
        return "gone"  # the machine rebooted since the owner started
    try:
        pid = int(labels.get(L_PID, ""))
    except ValueError:
        return "gone"
    start = process_start_time(pid)
    return "alive" if start is not None and start == labels.get(L_START) else "gone"


@dataclass(frozen=True)
class SandboxContainer:
    """One sandbox container as the engine lists it."""

    id: str
    name: str
    state: str
    status: str
    image: str
    created: int
    labels: dict[str, str]

    @property
    def owner(self) -> str:
        return owner_state(self.labels)

    @property
    def owner_pid(self) -> int | None:
        pid = self.labels.get(L_PID, "")
        return int(pid) if pid.isdigit() else None


def list_sandboxes() -> list[SandboxContainer]:
    """Every container labelled as a keye sandbox, running or not."""
    with engine_errors("cannot list sandbox containers"):
        rows = docker_client().api.containers(all=True, filters={"label": f"{SANDBOX_LABEL}=1"})
    return [
        SandboxContainer(
            id=r["Id"],
            name=(r.get("Names") or ["?"])[0].lstrip("/"),
            state=r.get("State", ""),
            status=r.get("Status", ""),
            image=r.get("Image", ""),
            created=int(r.get("Created", 0)),
            labels=r.get("Labels") or {},
        )
        for r in rows
    ]


def remove_container(container_id: str) -> bool:
    """Force-remove; False if it was already gone (removed by its owner, auto-remove, or another reaper)."""
    try:
        docker_client().api.remove_container(container_id, force=True)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as e:
        if e.response is not None and e.response.status_code == 409:  # removal already in progress elsewhere
            return False
        raise


def reap_orphans(*, everything: bool = False) -> list[SandboxContainer]:
    """Remove sandbox containers whose owner is gone (or all of them with ``everything``); return those removed."""
    removed = []
    for c in list_sandboxes():
        if everything or c.owner == "gone":
            if remove_container(c.id):
                removed.append(c)
    return removed
