"""The README's `keye-agent serve` example runs as written: its command starts the server (on a free port instead
of 8000, which another program may hold) over the demo model, SmolLM2-135M with constrained tool calls, and its
Python block, pointed at that port, prints the call the README says it prints."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
from serve_fixtures import ROOT, serve_command

README = (ROOT / "README.md").read_text()
SECTION = README.split("## `keye-agent serve`", 1)[1].split("\n## ", 1)[0]


@pytest.mark.timeout(900)  # the first use of the demo model converts it (minutes on a busy 2-core machine)
def test_the_serve_example_prints_what_the_readme_says(tmp_path):
    [command] = [b.strip() for b in re.findall(r"```bash\n(.*?)```", SECTION, re.S) if "keye-agent serve" in b]
    argv = shlex.split(command)
    assert argv[:2] == ["keye-agent", "serve"] and argv[-2:] == ["--port", "8000"]
    [code] = [b for b in re.findall(r"```python\n(.*?)```", SECTION, re.S) if "OpenAI(" in b]
    with serve_command(argv[2:-2], tmp_path / "serve.log", startup_s=600) as api:
        port = api.split(":")[-1].removesuffix("/v1")
        proc = subprocess.run([sys.executable, "-c", code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name, rest = proc.stdout.strip().split(" ", 1)
    args, total = rest.rsplit(" ", 1)
    assert name == "get_weather" and int(total) > 0
    assert json.loads(args) == {"city": "Oslo"}
    assert 'It prints `get_weather {"city": "Oslo"}`' in SECTION
