"""keye_agent.model imports and runs without the agent's dependencies (as on the GPU machine).

A subprocess installs a meta-path blocker, so importing pydantic, jsonschema, docker or xgrammar raises
ImportError, then imports keye_agent.model, builds the tiny preset and generates a few tokens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys

    BLOCKED = {"pydantic", "jsonschema", "docker", "xgrammar"}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for this test: {name}")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in BLOCKED:
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"blocker failed for {name}")

    import torch
    from keye_agent.model import build_model, generate
    import keye_agent.model.vision

    model = build_model("tiny", device="cpu", dtype=torch.float32)
    out = generate(model, [1, 5, 9, 33], 4, stop_token_ids=[])
    assert len(out.token_ids) == 4, out
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    # keye_agent.errors imports nothing of the package (DESIGN.md: everything may import it; vision raises MediaError);
    # the package root installs the log redaction of keye_agent._logging, which imports only errors;
    # keye_agent.formats is plain Python (the Hermes format the chat template renders).
    pure = ("keye_agent.model", "keye_agent.errors", "keye_agent._logging", "keye_agent.formats")
    agent_side = sorted(m for m in sys.modules if m.startswith("keye_agent.") and not m.startswith(pure))
    assert not agent_side, agent_side
    print("OK", out.token_ids)
""")


def test_model_runs_without_agent_dependencies():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("OK")
