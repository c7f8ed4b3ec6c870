"""The report of one run (a trajectory saved as JSONL): a timeline of its steps (model time against tool time), token
use per step, and each step with the model's text, its calls (arguments, result or error) and its faults; steps with
a fault, and the steps that corrected one, stand out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keye_agent.types import StepRecord, ToolCall, ToolResult, Trajectory

from .page import as_json, badge, document, esc, kv, pre, seconds, table


def saved_result(path: str | Path) -> dict[str, Any] | None:
    """The run's result from the closing line of a trajectory file (``Trajectory.save(path, result)`` writes it;
    ``Trajectory.load`` keeps only the trajectory)."""
    for line in reversed(Path(path).read_text(encoding="utf-8").splitlines()):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                return None
            return rec.get("result") if isinstance(rec, dict) and rec.get("type") == "end" else None
    return None


def _tool_time(rec: StepRecord) -> float:
    return max(0.0, rec.duration_s - rec.model_duration_s) if rec.tool_results else 0.0


def _corrected(steps: list[StepRecord]) -> dict[int, int]:
    """Position of each model step that followed a failed model step without a fault of its own -> the step it
    corrected (the index of the failed one)."""
    out: dict[int, int] = {}
    last_failed: int | None = None
    for i, rec in enumerate(steps):
        if rec.kind != "model":
            continue
        if rec.errors:
            last_failed = rec.index
        elif last_failed is not None:
            out[i] = last_failed
            last_failed = None
    return out


def _label(rec: StepRecord) -> str:
    return f"step {rec.index}" if rec.kind == "model" else f"{rec.kind.replace('_', ' ')} {rec.index}"


def timeline(steps: list[StepRecord]) -> str:
    """One lane per record, placed at its start: the model's time, then the tools' time."""
    if not steps:
        return '<p class="muted">no steps</p>'
    t0 = min(s.started_at for s in steps)
    # records saved without their start times all carry ~the load time: lay them end to end instead
    placed = max(s.started_at for s in steps) - t0 > 0
    offsets, at = [], 0.0
    for s in steps:
        offsets.append(s.started_at - t0 if placed else at)
        at += s.duration_s
    total = max((o + s.duration_s for o, s in zip(offsets, steps, strict=True)), default=0.0) or 1.0
    lanes = []
    for off, s in zip(offsets, steps, strict=True):
        err = " err" if s.errors else ""
        segs = [f'<div class="seg model{err}" style="left:{100 * off / total:.3f}%;'
                f'width:{100 * s.model_duration_s / total:.3f}%" title="model {esc(seconds(s.model_duration_s))}">'
                "</div>"]
        if _tool_time(s):
            segs.append(f'<div class="seg tool{err}" style="left:{100 * (off + s.model_duration_s) / total:.3f}%;'
                        f'width:{100 * _tool_time(s) / total:.3f}%" title="tools {esc(seconds(_tool_time(s)))}">'
                        "</div>")
        lanes.append(f'<div class="lane"><div class="label">{esc(_label(s))}</div>'
                     f'<div class="track">{"".join(segs)}</div></div>')
    legend = ('<div class="legend muted"><span style="background:var(--model)"></span>model'
              '<span style="background:var(--tool)"></span>tools'
              f'<span style="outline:2px solid var(--err)"></span>a fault in the step · {esc(seconds(total))} '
              "in all</div>")
    return f'<div class="timeline">{"".join(lanes)}{legend}</div>'


def _bar(n: int, most: int, cls: str = "") -> str:
    width = 0 if most <= 0 else max(1, round(80 * n / most)) if n else 0
    return f'<span class="tokbar {cls}" style="width:{width}px"></span>{n}'


def step_table(steps: list[StepRecord]) -> str:
    most = max((max(s.usage.prompt_tokens, s.usage.completion_tokens) for s in steps), default=0)
    rows, classes = [], []
    for s in steps:
        rows.append([esc(_label(s)), esc(seconds(s.model_duration_s)), esc(seconds(_tool_time(s))),
                     _bar(s.usage.prompt_tokens, most), _bar(s.usage.completion_tokens, most, "out"),
                     esc(len(s.tool_results)), esc(", ".join(str(f.kind) for f in s.errors) or "-")])
        classes.append("err" if s.errors else "")
    return table(["step", "model", "tools", "tokens in", "tokens out", "calls", "faults"], rows, num={1, 2},
                 row_class=classes)


def _calls(rec: StepRecord) -> str:
    calls: dict[str, ToolCall] = {c.id: c for c in rec.turn.tool_calls} if rec.turn is not None else {}
    rows, classes = [], []
    for res in rec.tool_results:
        call = calls.get(res.call_id)
        args = pre(as_json(call.arguments)) if call is not None else '<span class="muted">-</span>'
        rows.append([esc(res.name), args, _outcome(res), esc(seconds(res.duration_s)), esc(res.attempts)])
        classes.append("" if res.ok else "err")
    return table(["tool", "arguments", "result", "time", "attempts"], rows, num={3, 4}, row_class=classes)


def _outcome(res: ToolResult) -> str:
    if res.ok:
        return pre(res.content)
    kind = f" ({res.error_kind})" if res.error_kind else ""
    label = f"{res.error_type or 'error'}{kind}"
    return f"{badge(label, 'err')}{pre(res.error)}"


def step_card(rec: StepRecord, corrects: int | None) -> str:
    cls = "err" if rec.errors else "fix" if corrects is not None else ""
    head = f"<h3>{esc(_label(rec).capitalize())}"
    if rec.kind != "model":
        head += badge(rec.kind, "kind")
    for f in rec.errors:
        head += badge(str(f.kind), "err")
    if corrects is not None:
        head += badge(f"corrects step {corrects}", "fix")
    head += "</h3>"
    parts = [head, kv({"model": seconds(rec.model_duration_s), "tools": seconds(_tool_time(rec)),
                       "first chunk": seconds(rec.model_first_chunk_s),
                       "tokens": f"{rec.usage.prompt_tokens} in / {rec.usage.completion_tokens} out",
                       **({"finish": rec.turn.finish_reason} if rec.turn is not None else {})})]
    turn = rec.turn
    if turn is not None and turn.reasoning:
        parts.append(f"<details><summary>reasoning</summary>{pre(turn.reasoning)}</details>")
    if turn is not None and turn.text:
        parts.append(f"<div><b>model</b>{pre(turn.text)}</div>")
    if turn is not None and turn.parse_errors and turn.raw:
        parts.append(f"<details><summary>raw output (did not parse)</summary>{pre(turn.raw)}</details>")
    for note in rec.notes:
        parts.append(f'<div class="note">{esc(note)}</div>')
    if rec.tool_results:
        parts.append(_calls(rec))
    for f in rec.errors:
        told = "the run ended" if str(f.kind) in ("budget", "model", "cancelled") else "the model was told"
        parts.append(f'<div class="fault"><b>{esc(f.kind)}</b> · {esc(told)}{pre(f.message)}</div>')
    return f'<div class="card item {cls}">{"".join(parts)}</div>'


def render_trajectory(traj: Trajectory, result: dict[str, Any] | None = None, *, source: str = "") -> str:
    """The whole page of one run."""
    steps = traj.steps
    corrected = _corrected(steps)
    usage_in = sum(s.usage.prompt_tokens for s in steps)
    usage_out = sum(s.usage.completion_tokens for s in steps)
    status = (result or {}).get("status") or "unknown"
    facts = {"model": traj.model or "?", "steps": len([s for s in steps if s.kind == "model"]),
             "tokens": f"{usage_in} in / {usage_out} out",
             "model time": seconds(sum(s.model_duration_s for s in steps)),
             "tool time": seconds(sum(_tool_time(s) for s in steps)),
             "faults": sum(len(s.errors) for s in steps), "corrections": len(corrected)}
    if result and result.get("duration_s") is not None:
        facts["wall clock"] = seconds(float(result["duration_s"]))
    body = [f"<h1>Run report {badge(status, 'ok' if status == 'completed' else 'err')}</h1>",
            f'<div class="muted">{esc(source)}</div>',
            f'<div class="card"><b>task</b>{pre(traj.task)}', kv(facts)]
    if result and result.get("final_answer"):
        body.append(f"<b>final answer</b>{pre(result['final_answer'])}")
    if result and result.get("error"):
        body.append(f'<div class="fault"><b>why it ended</b>{pre(result["error"])}</div>')
    body.append("</div>")
    body += ["<h2>Timeline</h2>", timeline(steps), "<h2>Steps</h2>", step_table(steps),
             '<div class="toolbar"><button id="errors-only">show only steps with faults</button>'
             '<button id="expand-all">expand all</button></div>']
    body += [step_card(s, corrected.get(i)) for i, s in enumerate(steps)]
    return document(f"keye-agent run: {traj.task[:60]}", "\n".join(body))
