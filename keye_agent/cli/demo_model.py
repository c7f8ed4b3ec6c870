"""Kept for old imports and ``python -m keye_agent.cli.demo_model``: the demo model lives in
:mod:`keye_agent.backends.demo_model`."""

from keye_agent.backends.demo_model import CHECKPOINT_NAME, GGUF_NAME, PACKAGE, cache_dir, ensure_demo_model, fetch_gguf

__all__ = ["CHECKPOINT_NAME", "GGUF_NAME", "PACKAGE", "cache_dir", "ensure_demo_model", "fetch_gguf"]

if __name__ == "__main__":
    print(ensure_demo_model())
