"""The README's security example runs as written (a fresh interpreter, as tests/test_readme.py runs the others):
redaction of a whole and a cut secret, and a YAML alias bomb refused at its line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_security_example_prints_what_it_says(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    [section] = re.findall(r"## Security\n(.*?)\n## ", readme, re.S)
    [block] = re.findall(r"```python\n(.*?)```", section, re.S)
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = [ln.split("# ", 1)[1] for ln in block.splitlines() if ln.startswith("# ")]
    expected.append(re.search(r"print\(e\.line.*# (.*)", block).group(1))
    assert proc.stdout.strip().splitlines() == expected, proc.stdout
    for limit in ("1,000,000 bytes", "5 MiB", "16 MiB", "100 deep", "100,000 nodes", "2,000,000 characters",
                  "no-new-privileges", "link-local", "httpcore"):
        assert limit in section, limit
