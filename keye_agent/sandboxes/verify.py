"""Check, from what the supervisor saw inside the container, that every configured limit took effect.

Docker may accept a limit the kernel cannot enforce and only warn (no swap accounting, no pids controller, a
rootless engine without cgroup delegation). A sandbox that silently lacks a limit is worse than none, so
`DockerSandbox.start` refuses to hand out a container for which `check_limits` reports any problem.
"""

from __future__ import annotations

from typing import Any

from .config import SandboxConfig

_PAGE = 4096
_UNLIMITED = {"max", "-1", "9223372036854771712"}


def _num(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _pages(n: int) -> int:
    return -(-n // _PAGE) * _PAGE


def check_limits(facts: dict[str, Any], cfg: SandboxConfig) -> list[str]:
    """Problems found (empty when every limit is in force). ``facts`` is the supervisor's hello."""
    problems: list[str] = []
    if facts.get("uid") != cfg.uid or facts.get("euid") != cfg.uid or facts.get("gid") != cfg.gid:
        problems.append(f"runs as uid {facts.get('uid')} gid {facts.get('gid')}, expected {cfg.user}")
    if not cfg.cap_add:
        for key in ("cap_eff", "cap_prm", "cap_bnd", "cap_amb"):
            if _num_hex(facts.get(key)) != 0:
                problems.append(f"capabilities not all dropped: {key} = {facts.get(key)}")
    if cfg.no_new_privileges and str(facts.get("no_new_privs")) != "1":
        problems.append("no-new-privileges is not set on the container's processes")
    mounts = facts.get("mounts", {})
    if cfg.read_only_root:
        root_opts = mounts.get("/", {}).get("options", "").split(",")
        if "ro" not in root_opts or facts.get("root_writable"):
            problems.append(f"root filesystem is writable (mount options {root_opts})")
    for mp, size in (("/tmp", cfg.tmp_size), ("/workspace", cfg.workspace_size)):
        m = mounts.get(mp)
        if not m or m.get("fstype") != "tmpfs":
            problems.append(f"{mp} is not a tmpfs ({m})")
        elif facts.get("fs_size", {}).get(mp) != _pages(int(size)):
            problems.append(f"{mp} is {facts.get('fs_size', {}).get(mp)} bytes, expected {_pages(int(size))}")
        elif "nosuid" not in m.get("options", "").split(","):
            problems.append(f"{mp} is mounted without nosuid")
    if _num(facts.get("mem_limit")) != cfg.memory:
        problems.append(f"memory limit is {facts.get('mem_limit')}, expected {cfg.memory}")
    problems += _check_swap(facts, cfg)
    if _num(facts.get("pids_max")) != cfg.pids_limit:
        problems.append(f"pids limit is {facts.get('pids_max')}, expected {cfg.pids_limit}")
    quota, period = _num(facts.get("cpu_quota")), _num(facts.get("cpu_period"))
    if not quota or not period or quota < 0 or abs(quota / period - cfg.cpus) > 0.01 * cfg.cpus:
        problems.append(f"CPU quota is {facts.get('cpu_quota')}/{facts.get('cpu_period')}, expected {cfg.cpus} cores")
    if not cfg.network:
        if facts.get("net_ifaces") != ["lo"] or facts.get("net_route"):
            problems.append(
                f"network is not disabled: interfaces {facts.get('net_ifaces')}, route {facts.get('net_route')}"
            )
    return problems


def _num_hex(value: Any) -> int | None:
    try:
        return int(str(value), 16)
    except (TypeError, ValueError):
        return None


def _check_swap(facts: dict[str, Any], cfg: SandboxConfig) -> list[str]:
    memsw = facts.get("memsw_limit")
    if memsw is not None:  # cgroup v1 with swap accounting
        if _num(memsw) != cfg.swap_total:
            return [f"memory+swap limit is {memsw}, expected {cfg.swap_total}"]
        return []
    swap_v2 = facts.get("swap_max_v2")
    if swap_v2 is not None:
        expected = cfg.swap_total - int(cfg.memory)
        if _num(swap_v2) != expected:
            return [f"swap limit is {swap_v2}, expected {expected}"]
        return []
    # No swap accounting: the swap limit cannot be enforced, which is harmless only if there is no swap at all.
    if facts.get("swap_total", 0) and cfg.swap_total == cfg.memory:
        return [
            "the kernel has no swap accounting, so the container could swap past its memory limit "
            "(boot with swapaccount=1, turn swap off, or set verify_limits=False to accept it)"
        ]
    return []
