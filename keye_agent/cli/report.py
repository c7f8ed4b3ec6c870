"""`keye-agent report TRAJECTORY.jsonl|RESULTS.json -o report.html`: one self-contained HTML page of a run or of a
TAU results file (see :mod:`keye_agent.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    source: Annotated[Path, typer.Argument(help="A trajectory (run --save FILE.jsonl) or a TAU results file "
                                                "(tau run --save-to FILE.json).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
) -> None:
    """Write a self-contained HTML report: the steps on a timeline (model time against tool time), each call with
    its arguments and result, faults and corrections highlighted, tokens per step; for TAU results the per-task
    pass^k table and the reward breakdown."""
    from keye_agent.report import write_report

    path = write_report(source, out)
    typer.echo(f"report written to {path}")
