"""Build the sandbox image without a registry: debootstrap a Debian rootfs, install packages, `docker import` it.

Steps (all as root; debootstrap and chroot need it):

1. ``debootstrap --variant=minbase`` into a temporary directory, its .deb files kept in the cache directory;
   (the bare base system is kept as ``base-<suite>-<variant>.tar``, so a new package list skips this step);
2. ``apt-get install --no-install-recommends`` of the recipe's packages inside a chroot (apt resolves alternatives
   properly, which debootstrap's own resolver does not), with the archive cache bind-mounted from the cache dir;
3. add the unprivileged user, pre-build matplotlib's font cache, delete docs, locales and apt lists;
4. tar the tree (cached as ``rootfs-<digest>.tar``) and import it with the runtime settings baked in.

The Debian mirror is the one apt on this machine uses (read from /etc/apt), or ``$KEYE_SANDBOX_MIRROR``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from keye_agent.errors import SandboxError

from ._docker import docker_client, image_exists
from .recipe import DEFAULT_RECIPE, MATPLOTLIB_CACHE, RECIPE_LABEL, Recipe

Log = Callable[[str], None]


def cache_dir() -> Path:
    """Where .deb files and built root filesystems are kept: ``$KEYE_CACHE_DIR/sandbox`` or ~/.cache/keye-agent."""
    base = os.environ.get("KEYE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "keye-agent")
    path = Path(base) / "sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def debian_mirror(suite: str, apt_dir: Path = Path("/etc/apt")) -> str:
    """The mirror apt uses here for ``suite`` (deb822 .sources files first, then sources.list)."""
    if os.environ.get("KEYE_SANDBOX_MIRROR"):
        return os.environ["KEYE_SANDBOX_MIRROR"]
    apt = apt_dir
    for f in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in f.read_text().split("\n\n"):
            fields = dict((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in stanza.splitlines()) if v)
            if suite in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
                return fields["URIs"].split()[0]
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for f in lists:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if m and m.group(2) == suite:
                return m.group(1)
    raise SandboxError(
        f"no Debian mirror for {suite!r} found in /etc/apt",
        hint="set KEYE_SANDBOX_MIRROR to a Debian mirror URL",
    )


def _run(cmd: list[str], log_file: Path, what: str, env: dict[str, str] | None = None) -> None:
    with open(log_file, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-15:]
        raise SandboxError(f"{what} failed (exit {proc.returncode}); last lines of {log_file}:\n" + "\n".join(tail))


def _ensure_debootstrap(log_file: Path) -> None:
    if shutil.which("debootstrap"):
        return
    if os.geteuid() != 0:
        raise SandboxError("debootstrap is not installed", hint="apt-get install -y debootstrap (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], log_file, "apt-get update", env)
    _run(["apt-get", "install", "-y", "-qq", "debootstrap"], log_file, "installing debootstrap", env)


def _chroot_env() -> dict[str, str]:
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
        "HOME": "/root",
    }


def make_rootfs(recipe: Recipe, tarball: Path, log: Log) -> None:
    """Build the root filesystem of ``recipe`` and write it to ``tarball``."""
    if os.geteuid() != 0:
        raise SandboxError("building the sandbox image needs root (debootstrap, chroot)", hint="run it as root")
    cache = tarball.parent
    log_file = cache / "build.log"
    _ensure_debootstrap(log_file)
    mirror = debian_mirror(recipe.suite)
    debs = cache / "debs"
    archives = cache / "apt-archives"
    debs.mkdir(exist_ok=True)
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    root = work / "root"
    mounted = False
    try:
        t0 = time.monotonic()
        base = cache / f"base-{recipe.suite}-{recipe.variant}.tar"
        if base.exists():
            log(f"[1/4] base system from {base}")
            root.mkdir()
            _run(["tar", "--numeric-owner", "-C", str(root), "-xf", str(base)], log_file, "unpacking the base system")
        else:
            log(f"[1/4] debootstrap {recipe.variant} {recipe.suite} (log: {log_file})")
            _run(
                ["debootstrap", f"--variant={recipe.variant}", f"--cache-dir={debs}", recipe.suite, str(root), mirror],
                log_file,
                "debootstrap",
            )
            # Kept so that a change of packages re-runs only the apt step.
            _run(["tar", "--numeric-owner", "-C", str(root), "-cf", f"{base}.partial", "."], log_file, "tar (base)")
            os.replace(f"{base}.partial", base)
        log(f"      done in {time.monotonic() - t0:.0f} s")
        t0 = time.monotonic()
        log(f"[2/4] apt-get install {len(recipe.packages)} packages")
        # Fast unpacking: nothing here needs to survive a power cut before the tarball is written.
        (root / "etc/dpkg/dpkg.cfg.d/keye-unsafe-io").write_text("force-unsafe-io\n")
        subprocess.run(["mount", "--bind", str(archives), str(root / "var/cache/apt/archives")], check=True)
        mounted = True
        env = _chroot_env()
        _run(["chroot", str(root), "apt-get", "update", "-qq"], log_file, "apt-get update (chroot)", env)
        _run(
            ["chroot", str(root), "apt-get", "install", "-y", "-qq", "--no-install-recommends", *recipe.packages],
            log_file,
            "apt-get install (chroot)",
            env,
        )
        subprocess.run(["umount", str(root / "var/cache/apt/archives")], check=True)
        mounted = False
        log(f"      done in {time.monotonic() - t0:.0f} s")
        t0 = time.monotonic()
        log("[3/4] user, matplotlib font cache, clean-up")
        _finish_tree(recipe, root, log_file)
        log("[4/4] tar")
        tmp = tarball.with_suffix(".tar.partial")
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(tmp), "."], log_file, "tar")
        tmp.rename(tarball)
        log(f"      rootfs {tarball.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - t0:.0f} s")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root / "var/cache/apt/archives")], check=False)
        # --one-file-system: never follow a mount that failed to come off into the host's cache.
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)


def _finish_tree(recipe: Recipe, root: Path, log_file: Path) -> None:
    uid = recipe.uid
    with open(root / "etc/passwd", "a") as f:
        f.write(f"{recipe.user}:x:{uid}:{uid}:keye sandbox:/tmp:/bin/bash\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"{recipe.user}:x:{uid}:\n")
    with open(root / "etc/shadow", "a") as f:
        f.write(f"{recipe.user}:!:19000:0:99999:7:::\n")
    for d in ("workspace", "tmp"):
        (root / d).mkdir(exist_ok=True)
    os.chown(root / "workspace", uid, uid)
    mpl = root / MATPLOTLIB_CACHE.lstrip("/")
    mpl.mkdir(parents=True, exist_ok=True)
    env = {**_chroot_env(), "MPLCONFIGDIR": MATPLOTLIB_CACHE, "MPLBACKEND": "Agg"}
    _run(
        ["chroot", str(root), "python3", "-c", "import matplotlib.pyplot as p; p.figure()"],
        log_file,
        "building matplotlib's font cache",
        env,
    )
    (root / "etc/dpkg/dpkg.cfg.d/keye-unsafe-io").unlink()
    for rel in recipe.removed_paths:
        shutil.rmtree(root / rel, ignore_errors=True)
        (root / rel).mkdir(parents=True, exist_ok=True)


def import_rootfs(tarball: Path, recipe: Recipe) -> None:
    """``docker import`` the tarball as ``recipe.image_tag`` with the sandbox's runtime defaults."""
    repo, tag = recipe.image_tag.split(":")
    changes = [
        f"USER {recipe.uid}:{recipe.uid}",
        "WORKDIR /workspace",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/tmp MPLBACKEND=Agg MPLCONFIGDIR=/tmp/matplotlib",
        f"LABEL {RECIPE_LABEL}={recipe.digest}",
        'CMD ["python3"]',
    ]
    docker_client().api.import_image_from_file(str(tarball), repository=repo, tag=tag, changes=changes)
    if not image_exists(recipe.image_tag):
        raise SandboxError(f"docker import of {tarball} did not produce {recipe.image_tag}")


def build_image(recipe: Recipe = DEFAULT_RECIPE, *, force: bool = False, log: Log = print) -> str:
    """Make sure the image of ``recipe`` exists; build it if missing (or always, with ``force``). Returns its tag."""
    tag = recipe.image_tag
    if not force and image_exists(tag):
        log(f"{tag} is up to date")
        return tag
    t0 = time.monotonic()
    tarball = cache_dir() / f"rootfs-{recipe.digest[:12]}.tar"
    if force or not tarball.exists():
        make_rootfs(recipe, tarball, log)
    else:
        log(f"using cached root filesystem {tarball}")
    log(f"importing as {tag}")
    import_rootfs(tarball, recipe)
    log(f"built {tag} in {time.monotonic() - t0:.0f} s")
    return tag
