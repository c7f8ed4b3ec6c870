"""Part of the in-container program (see `_inside.py`): what the container looks like from inside.

Sent into the container together with `_inside_kernel.py` and `_inside.py` as one ``python3 -c`` source.
"""

import os
import socket
import sys

WORKSPACE = "/workspace"


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _status_fields():
    out = {}
    for line in (_read("/proc/self/status") or "").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _cgroup(v1, v2):
    value = _read(v1)
    return value if value is not None else _read(v2)


def _oom_kills():
    text = _read("/sys/fs/cgroup/memory/memory.oom_control") or _read("/sys/fs/cgroup/memory.events") or ""
    for line in text.splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def gather_facts():
    """What this container looks like from inside: user, capabilities, mounts, cgroup limits, network."""
    st = _status_fields()
    mounts = {}
    for line in (_read("/proc/self/mounts") or "").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] in ("/", "/tmp", WORKSPACE):
            mounts[parts[1]] = {"fstype": parts[2], "options": parts[3]}
    fs = {}
    for mp in ("/tmp", WORKSPACE):
        try:
            s = os.statvfs(mp)
            fs[mp] = s.f_blocks * s.f_frsize
        except OSError:
            fs[mp] = None
    try:
        probe = "/.keye-probe"
        with open(probe, "w"):
            pass
        os.unlink(probe)
        root_writable = True
    except OSError:
        root_writable = False
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: needs a route, sends nothing
        s.close()
        net_route = True
    except OSError:
        net_route = False
    swap = 0
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("SwapTotal:"):
            swap = int(line.split()[1]) * 1024
    cpu_max = _read("/sys/fs/cgroup/cpu.max")
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "euid": os.geteuid(),
        "cap_eff": st.get("CapEff"),
        "cap_prm": st.get("CapPrm"),
        "cap_bnd": st.get("CapBnd"),
        "cap_amb": st.get("CapAmb"),
        "no_new_privs": st.get("NoNewPrivs"),
        "mounts": mounts,
        "fs_size": fs,
        "root_writable": root_writable,
        "net_ifaces": sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else [],
        "net_route": net_route,
        "mem_limit": _cgroup("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
        "memsw_limit": _read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
        "swap_max_v2": _read("/sys/fs/cgroup/memory.swap.max"),
        "swap_total": swap,
        "pids_max": _cgroup("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
        "cpu_quota": _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or (cpu_max.split()[0] if cpu_max else None),
        "cpu_period": _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or (cpu_max.split()[1] if cpu_max else None),
        "python": sys.version.split()[0],
    }
