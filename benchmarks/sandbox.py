"""Sandbox latency and throughput: keye's DockerSandbox against plain `docker run` / `docker exec` and against
llm-sandbox's Docker session, all on the same image, engine and machine, in one run.

    .venv/bin/python benchmarks/sandbox.py [--quick]

Measures (each method's output is checked to be "1" before anything is timed; warm-up calls are not timed):

* cold start: from nothing to the first result of ``print(1)`` (container create, start, first call, removal
  not included);
* warm round trip of ``print(1)`` in a running sandbox, p50 and p99;
* pool acquire: taking a started sandbox from a warm `SandboxPool`;
* throughput: calls per second of 4 sandboxes used at once from 4 threads.

Baselines: ``docker run --rm`` and ``docker exec`` through the CLI (a process per call, as a shell script would),
``exec_run`` through the Docker SDK (no CLI process), and llm-sandbox (installed by the ``bench`` extra) with
``skip_environment_setup=True`` since the machine has no network for its pip set-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable

from keye_agent.sandboxes import DockerSandbox, SandboxConfig, SandboxPool, default_image
from keye_agent.sandboxes._docker import docker_client

CODE = "print(1)"
SECURE_RUN_FLAGS = [
    "--network", "none", "--read-only", "--user", "1000:1000", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges", "--pids-limit", "128", "--memory", "512m", "--memory-swap", "512m",
    "--cpus", "1", "--tmpfs", "/tmp:size=64m", "--tmpfs", "/workspace:size=256m,uid=1000,gid=1000",
]  # fmt: skip


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def timed(fn: Callable[[], str], n: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        assert fn().strip() == "1"
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        out.append(time.perf_counter() - t0)
        assert result.strip() == "1", result
    return out


# ---- keye ----


def keye_cold(n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        sb = DockerSandbox().start()
        r = sb.run(CODE)
        out.append(time.perf_counter() - t0)
        assert r.stdout == "1\n"
        sb.close()
    return out


def keye_warm(n: int) -> list[float]:
    with DockerSandbox() as sb:
        return timed(lambda: sb.run(CODE).stdout, n, warmup=5)


def keye_pool_acquire(n: int) -> list[float]:
    out = []
    with SandboxPool(size=1) as pool:
        for _ in range(n):
            pool.wait_ready(timeout=60)
            t0 = time.perf_counter()
            sb = pool.acquire()
            out.append(time.perf_counter() - t0)
            assert sb.run(CODE).stdout == "1\n"
            sb.close()
    return out


def throughput(
    make: Callable[[], object], call: Callable[[object], str], close: Callable[[object], None], per: int
) -> float:
    """Calls per second of 4 sandboxes driven from 4 threads at once (start-up not counted)."""
    boxes = [make() for _ in range(4)]
    for b in boxes:
        assert call(b).strip() == "1"
    barrier = threading.Barrier(5)
    errors: list[BaseException] = []

    def work(b: object) -> None:
        barrier.wait()
        try:
            for _ in range(per):
                assert call(b).strip() == "1"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(b,)) for b in boxes]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for b in boxes:
        close(b)
    if errors:
        raise errors[0]
    return 4 * per / wall


# ---- plain docker ----


def docker_run_cold(n: int, image: str) -> list[float]:
    cmd = ["docker", "run", "--rm", *SECURE_RUN_FLAGS, image, "python3", "-c", CODE]
    return timed(lambda: subprocess.run(cmd, capture_output=True, text=True, check=True).stdout, n, warmup=1)


class PlainContainer:
    """A long-running container of the same image and limits, for `docker exec` baselines."""

    def __init__(self, image: str) -> None:
        cmd = ["docker", "run", "-d", "--rm", *SECURE_RUN_FLAGS, image, "sleep", "infinity"]
        self.id = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        self.container = docker_client().containers.get(self.id)

    def exec_cli(self) -> str:
        cmd = ["docker", "exec", self.id, "python3", "-c", CODE]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def exec_sdk(self) -> str:
        return self.container.exec_run(["python3", "-c", CODE]).output.decode()

    def close(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.id], capture_output=True, check=False)


# ---- llm-sandbox ----


def llm_session(image: str):  # type: ignore[no-untyped-def]
    from llm_sandbox import SandboxSession

    s = SandboxSession(
        lang="python", image=image, keep_template=True, skip_environment_setup=True, workdir="/tmp/sandbox"
    )
    s.open()
    return s


def llm_run(s) -> str:  # type: ignore[no-untyped-def]
    return s.run(CODE).stdout


def llm_cold(n: int, image: str) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        s = llm_session(image)
        result = llm_run(s)
        out.append(time.perf_counter() - t0)
        assert result.strip() == "1"
        s.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    q = args.quick
    image = default_image()
    SandboxConfig()  # fail early on a bad default
    rows: list[tuple[str, str, str, str]] = []

    def ms(x: float) -> str:
        return f"{x * 1e6:.0f} us" if x < 1e-3 else f"{x * 1000:.1f} ms"

    print(f"image {image}; engine {docker_client().version()['Version']}; {os.cpu_count()} CPUs; "
          f"load {os.getloadavg()[0]:.1f}; {platform.platform()}")  # fmt: skip

    n_cold = 3 if q else 7
    k_cold = keye_cold(n_cold)
    d_cold = docker_run_cold(n_cold, image)
    l_cold = llm_cold(max(2, n_cold // 2), image)
    rows.append(("cold start p50", ms(statistics.median(k_cold)), f"docker run {ms(statistics.median(d_cold))}",
                 ms(statistics.median(l_cold))))  # fmt: skip

    n_warm = 100 if q else 400
    k_warm = keye_warm(n_warm)
    plain = PlainContainer(image)
    try:
        cli = timed(plain.exec_cli, 20 if q else 40)
        sdk = timed(plain.exec_sdk, 20 if q else 40)
    finally:
        plain.close()
    s = llm_session(image)
    try:
        l_warm = timed(lambda: llm_run(s), 20 if q else 40)
    finally:
        s.close()
    for label, p in (("warm print(1) p50", 50), ("warm print(1) p99", 99)):
        rows.append(
            (label, ms(pct(k_warm, p)), f"exec CLI {ms(pct(cli, p))} / SDK {ms(pct(sdk, p))}", ms(pct(l_warm, p)))
        )

    acq = keye_pool_acquire(5 if q else 15)
    rows.append(("pool acquire p50", ms(statistics.median(acq)), f"(cold start {ms(statistics.median(k_cold))})", "-"))

    per = 25 if q else 100
    k_tp = throughput(lambda: DockerSandbox().start(), lambda b: b.run(CODE).stdout, lambda b: b.close(), per)
    d_tp = throughput(lambda: PlainContainer(image), lambda b: b.exec_sdk(), lambda b: b.close(), per // 4)
    l_tp = throughput(lambda: llm_session(image), llm_run, lambda b: b.close(), per // 10 or 2)
    rows.append(("4 sandboxes, calls/s", f"{k_tp:.0f}", f"exec SDK {d_tp:.1f}", f"{l_tp:.1f}"))

    speed = [
        ("warm p50 vs docker exec SDK", pct(sdk, 50) / pct(k_warm, 50)),
        ("warm p50 vs llm-sandbox", pct(l_warm, 50) / pct(k_warm, 50)),
        ("cold start vs llm-sandbox", statistics.median(l_cold) / statistics.median(k_cold)),
        ("throughput vs docker exec SDK", k_tp / d_tp),
        ("throughput vs llm-sandbox", k_tp / l_tp),
    ]
    widths = [24, 16, 34, 18]
    header = ("metric", "keye", "plain docker", "llm-sandbox 0.3.46")
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print()
    for label, ratio in speed:
        print(f"{label:<32} {ratio:7.1f}x")


if __name__ == "__main__":
    main()
