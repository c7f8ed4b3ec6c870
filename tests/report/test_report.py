"""`keye-agent report`: pages rendered in real headless Chromium (Debian's chromium), checked through the DOM it
dumps (after the page's script ran) and a screenshot. The run's model turns are scripted (a replay, not a model);
the CLI, tools, loop, trajectory file, report and browser are real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = str(ROOT / "tests" / "report" / "report_tools.py")
SECRET = "sk-report-test-5e4d3c2b1a0f9e8d7c6b"
CROSSCHECK = ROOT / "tests" / "tau" / "fixtures" / "tau2_metrics_crosscheck.json"

pytestmark = pytest.mark.timeout(1500)  # the first test may wait for make test's background chromium install


class _Page(HTMLParser):
    """Tags, their attributes, and tables as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keye_agent.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _call(tool: str, **args: object) -> str:
    return f'<tool_call>\n{json.dumps({"name": tool, "arguments": args})}\n</tool_call>'


def _assert_self_contained(html_text: str) -> None:
    page = _parse(html_text)
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "img"), tag
        for key in ("src", "href", "action", "srcset"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), (tag, key, value)
    assert [t for t, _ in page.tags].count("script") == 1  # the page's own, nothing injected


@pytest.fixture
def run_report(tmp_path: Path) -> Path:
    """A real run (a failed call, its correction, a tool result holding markup and a secret), saved and reported."""
    turns = [_call("get_weather", city="Osloo"),
             _call("get_weather", city="Oslo") + _call("read_note", name="x"),
             "Oslo: 4 C, rain."]
    script = tmp_path / "turns.jsonl"
    script.write_text("".join(json.dumps(t) + "\n" for t in turns), encoding="utf-8")
    env = {"KEYE_REPORT_TEST_API_KEY": SECRET}
    run = _cli("run", "Weather in Oslo?", "--model", f"scripted:{script}", "--tools", TOOLS, "--save", "run.jsonl",
               "--json", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    rep = _cli("report", "run.jsonl", "-o", "out/report.html", cwd=tmp_path, env=env)
    assert rep.returncode == 0, rep.stderr
    assert "report written to out/report.html" in rep.stdout
    return tmp_path / "out" / "report.html"


def test_run_report_dom_in_chromium(run_report: Path, browse) -> None:
    html_text = run_report.read_text(encoding="utf-8")
    _assert_self_contained(html_text)
    assert SECRET not in html_text
    proc = browse(run_report, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    page = _parse(dom)
    attrs = dict(page.tags)
    assert attrs["body"].get("data-ready") == "1"  # the page's own script ran
    assert "data-pwned" not in attrs["html"]  # the tool result's markup did not
    assert "img" not in attrs and [t for t, _ in page.tags].count("script") == 1
    assert "&lt;script&gt;document.documentElement.setAttribute" in dom  # shown as text
    assert "&lt;img src=x onerror=" in dom
    assert SECRET not in dom and "token=***" in dom

    assert dom.count('class="lane"') == 3  # the timeline: a lane per step
    assert 'class="seg model err"' in dom and 'class="seg tool"' in dom
    [steps, *calls] = page.tables
    assert [r[0] for r in steps[1:]] == ["step 1", "step 2", "step 3"]
    assert steps[0][:5] == ["step", "model", "tools", "tokens in", "tokens out"]
    assert all(int(r[3]) > 0 and int(r[4]) > 0 for r in steps[1:])  # tokens per step
    assert steps[1][6] == "tool" and steps[2][6] == "-"
    failed = calls[0][1]
    assert failed[0] == "get_weather" and '"city": "Osloo"' in failed[1]
    assert "ValueError (failed)" in failed[2] and "unknown city 'Osloo'" in failed[2]
    assert [r[0] for r in calls[1][1:]] == ["get_weather", "read_note"]
    assert calls[1][1][2] == "4 C, rain"
    assert "corrects step 1" in dom and "the model was told" in dom
    assert "Oslo: 4 C, rain." in dom  # the final answer


def test_run_report_screenshot(run_report: Path, browse, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    proc = browse(run_report, f"--screenshot={shot}", "--window-size=1280,1400")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 1400)
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 100  # text, bars and badges: not a blank page

    def has(rgb: tuple[int, int, int], tol: int = 4, least: int = 50) -> bool:
        return sum(n for n, c in colors if all(abs(a - b) <= tol for a, b in zip(c, rgb, strict=True))) >= least

    assert has((0x4F, 0x7C, 0xC4))  # model time on the timeline and the token bars
    assert has((0xE0, 0x9A, 0x3A))  # tool time
    assert has((0xC9, 0x30, 0x2C))  # a fault: the failed step's border and badges
    assert has((0x2E, 0x8B, 0x57))  # the correction


def test_tau_results_report(browse, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(json.loads(CROSSCHECK.read_text())["results"]), encoding="utf-8")
    expected = json.loads(CROSSCHECK.read_text())["tau2_compute_metrics"]
    rep = _cli("report", str(results), "-o", "tau.html", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    page_file = tmp_path / "tau.html"
    _assert_self_contained(page_file.read_text(encoding="utf-8"))
    proc = browse(page_file, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    page = _parse(dom)
    assert dict(page.tags)["body"].get("data-ready") == "1"
    for k, v in expected["pass_hat_ks"].items():  # the summary: tau2-bench's own figures for this file
        assert f"pass^{k}</b> {v:.3f}" in dom
    assert f"average reward</b> {expected['avg_reward']:.3f}" in dom
    per_task, breakdown, *_ = page.tables
    header, rows = per_task[0], per_task[1:]
    assert header[:4] == ["task", "trials", "successes", "avg reward"] and len(rows) == expected["total_tasks"]
    for k, v in expected["pass_hat_ks"].items():  # the per-task table averages to the same pass^k
        col = header.index(f"pass^{k}")
        assert sum(float(r[col]) for r in rows) / len(rows) == pytest.approx(v, abs=1e-3)
    assert sum(int(r[1]) for r in rows) == expected["total_simulations"]
    assert breakdown[0][:4] == ["task", "trial", "ended by", "reward"] and "DB" in breakdown[0]
    assert len(breakdown) - 1 == 40  # every simulation, the one that never ran too
    assert "infrastructure_error" in [r[2] for r in breakdown[1:]]
