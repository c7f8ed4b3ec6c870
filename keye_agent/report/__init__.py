"""`keye-agent report`: one self-contained HTML page (inline CSS and JS, nothing fetched) of a run's trajectory
(JSONL, as ``--save`` and ``Trajectory.save`` write it) or of a TAU results file (JSON, tau2-bench's format).

    from keye_agent.report import write_report
    write_report("run.jsonl", "report.html")
"""

from __future__ import annotations

import json
from pathlib import Path

from keye_agent.errors import ConfigError


def render_report(source: str | Path) -> str:
    """The page of ``source``: a trajectory (``.jsonl``) or a TAU results file (a JSON object with
    ``simulations``); which one is decided by the content, not the name."""
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"no such file: {path}", hint="give a trajectory (run --save FILE.jsonl) or a TAU results "
                                                        "file (tau run --save-to FILE.json)")
    with path.open(encoding="utf-8") as f:
        first = f.readline(1 << 20)
    try:
        header = json.loads(first)
    except json.JSONDecodeError:
        header = None  # a results file is one JSON document, usually over many lines
    if not (isinstance(header, dict) and header.get("type") == "header"):
        return _results_page(path)
    from keye_agent.types import Trajectory

    from .trajectory import render_trajectory, saved_result

    return render_trajectory(Trajectory.load(path), saved_result(path), source=str(path))


def _results_page(path: Path) -> str:
    try:
        from keye_agent.tau.results import Results
    except ImportError as e:  # pragma: no cover - the tau runner ships with the package
        raise ConfigError(f"TAU results need the TAU runner ({e})") from None
    from .tau import render_results

    return render_results(Results.load(path), source=str(path))


def write_report(source: str | Path, out: str | Path) -> Path:
    """Render ``source`` and write the page to ``out`` (its folder is made if missing)."""
    page = render_report(source)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


__all__ = ["render_report", "write_report"]

