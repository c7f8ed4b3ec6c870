"""SandboxConfig parsing and the limit checks (pure functions: the facts here are hand-written dicts shaped like
the supervisor's hello; the real hello is checked in test_sandbox.py)."""

from __future__ import annotations

import pytest

from keye_agent.errors import ConfigError
from keye_agent.sandboxes import SandboxConfig
from keye_agent.sandboxes.config import parse_size
from keye_agent.sandboxes.verify import check_limits


def good_facts(cfg: SandboxConfig) -> dict:
    return {
        "uid": 1000, "gid": 1000, "euid": 1000,
        "cap_eff": "0" * 16, "cap_prm": "0" * 16, "cap_bnd": "0" * 16, "cap_amb": "0" * 16,
        "no_new_privs": "1",
        "mounts": {
            "/": {"fstype": "overlay", "options": "ro,relatime"},
            "/tmp": {"fstype": "tmpfs", "options": "rw,nosuid,nodev,noexec"},
            "/workspace": {"fstype": "tmpfs", "options": "rw,nosuid,nodev"},
        },
        "fs_size": {"/tmp": cfg.tmp_size, "/workspace": cfg.workspace_size},
        "root_writable": False, "net_ifaces": ["lo"], "net_route": False,
        "mem_limit": str(cfg.memory), "memsw_limit": str(cfg.swap_total), "swap_max_v2": None, "swap_total": 0,
        "pids_max": str(cfg.pids_limit), "cpu_quota": str(int(cfg.cpus * 100000)), "cpu_period": "100000",
    }  # fmt: skip


def test_sizes() -> None:
    assert parse_size("512m") == 512 * 2**20 and parse_size("1.5GiB") == 3 * 2**29 and parse_size(4096) == 4096
    for bad in ("lots", "-1m", 0, True):
        with pytest.raises(ConfigError):
            parse_size(bad)  # type: ignore[arg-type]


def test_defaults_are_secure_and_documented() -> None:
    cfg = SandboxConfig()
    assert not cfg.network and cfg.read_only_root and cfg.no_new_privileges and cfg.cap_add == ()
    assert cfg.user == "1000:1000" and cfg.swap_total == cfg.memory == 512 * 2**20 and cfg.pids_limit == 128
    doc = SandboxConfig.__module__
    import importlib

    table = importlib.import_module(doc).__doc__ or ""
    for name in ("network", "read_only_root", "tmp_size", "pids_limit", "memory_swap", "cpus", "timeout_s"):
        assert name in table


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="memory_swap"):
        SandboxConfig(memory="1g", memory_swap="512m")
    with pytest.raises(ConfigError, match="uid:gid"):
        SandboxConfig(user="root")
    with pytest.raises(ConfigError, match="unknown sandbox option"):
        SandboxConfig.from_options(mem="1g")


def test_check_limits_accepts_a_container_where_everything_held() -> None:
    cfg = SandboxConfig()
    assert check_limits(good_facts(cfg), cfg) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"uid": 0, "euid": 0}, "runs as uid 0"),
        ({"cap_eff": "00000000a80425fb"}, "capabilities not all dropped"),
        ({"no_new_privs": "0"}, "no-new-privileges"),
        ({"root_writable": True}, "root filesystem is writable"),
        ({"mem_limit": "9223372036854771712"}, "memory limit"),
        ({"memsw_limit": "9223372036854771712"}, "memory+swap"),
        ({"pids_max": "max"}, "pids limit is max"),
        ({"cpu_quota": "-1"}, "CPU quota"),
        ({"net_ifaces": ["eth0", "lo"], "net_route": True}, "network is not disabled"),
    ],
)
def test_check_limits_names_each_missing_limit(change: dict, message: str) -> None:
    cfg = SandboxConfig()
    problems = check_limits({**good_facts(cfg), **change}, cfg)
    assert len(problems) == 1 and message in problems[0]


def test_missing_swap_accounting_is_refused_only_when_there_is_swap() -> None:
    cfg = SandboxConfig()
    facts = {**good_facts(cfg), "memsw_limit": None}
    assert check_limits(facts, cfg) == []  # no swap on the host: nothing to limit
    assert "no swap accounting" in check_limits({**facts, "swap_total": 2**30}, cfg)[0]


def test_tmpfs_size_is_checked() -> None:
    cfg = SandboxConfig()
    facts = good_facts(cfg)
    facts["fs_size"] = {"/tmp": 2**30, "/workspace": cfg.workspace_size}
    assert "/tmp is 1073741824 bytes" in check_limits(facts, cfg)[0]


def test_docker_sandbox_satisfies_the_sandbox_protocol() -> None:
    from keye_agent.sandboxes import DockerSandbox, Sandbox

    assert isinstance(DockerSandbox(), Sandbox)  # not started: constructing costs nothing
