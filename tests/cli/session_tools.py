"""Tools for the CLI tests, loaded with `--tools tests/cli/session_tools.py` (a real Python tool file)."""

import os
import time
from pathlib import Path

from keye_agent.tools import tool


@tool
def lookup(key: str) -> str:
    """Look a key up in a tiny table.

    Args:
        key: The key to look up.
    """
    return {"alpha": "ALPHA-VALUE-1", "beta": "BETA-VALUE-2"}.get(key, f"no entry {key!r}")


@tool(mutates_state=True)
def write_note(text: str) -> str:
    """Append a line to the notes file named by $KEYE_TEST_NOTES.

    Args:
        text: The line to write.
    """
    with Path(os.environ["KEYE_TEST_NOTES"]).open("a", encoding="utf-8") as f:
        f.write(text + "\n")
    return "written"


@tool(timeout_s=None)
def slow(seconds: float) -> str:
    """Wait, then say so.

    Args:
        seconds: How long to wait.
    """
    time.sleep(seconds)
    return f"waited {seconds} s"
