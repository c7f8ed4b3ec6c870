"""The page around a report: one self-contained HTML document (inline CSS and JS, nothing fetched), and the helpers
every section uses. All content goes through :func:`esc` (redacted, then HTML-escaped): a tool result holding
``<script>`` shows as text."""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Any

from keye_agent.errors import redact

CSS = """
:root { --model: #4f7cc4; --tool: #e09a3a; --err: #c9302c; --fix: #2e8b57; --warn: #b8860b; --muted: #666;
        --line: #ddd; --bg-err: #fdecea; --bg-fix: #eaf6ee; --bg-warn: #fff7e0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 24px 32px;
       color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 0; }
.muted { color: var(--muted); }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; margin: 10px 0; }
.card.err { border-left: 5px solid var(--err); } .card.fix { border-left: 5px solid var(--fix); }
.kv { display: flex; flex-wrap: wrap; gap: 6px 24px; margin: 8px 0; }
.kv b { font-weight: 600; }
table { border-collapse: collapse; width: 100%; background: #fff; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.err td { background: var(--bg-err); }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace;
      max-height: 320px; overflow: auto; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; color: #fff; margin-left: 6px; }
.badge.err { background: var(--err); } .badge.fix { background: var(--fix); } .badge.warn { background: var(--warn); }
.badge.ok { background: var(--fix); } .badge.kind { background: #777; }
.fault { background: var(--bg-err); border: 1px solid #f3c1bd; border-radius: 4px; padding: 6px 8px; margin: 6px 0; }
.note { background: var(--bg-warn); border-radius: 4px; padding: 4px 8px; margin: 4px 0; }
.timeline { position: relative; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
.lane { display: flex; align-items: center; height: 22px; margin: 3px 0; }
.lane .label { width: 90px; flex: none; font-size: 12px; }
.lane .track { position: relative; flex: 1; height: 16px; background: #f3f3f3; border-radius: 3px; }
.seg { position: absolute; top: 0; height: 16px; border-radius: 3px; min-width: 2px; }
.seg.model { background: var(--model); } .seg.tool { background: var(--tool); }
.seg.err { outline: 2px solid var(--err); }
.legend span { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: middle;
               margin: 0 4px 0 12px; }
.tokbar { display: inline-block; height: 10px; background: var(--model); vertical-align: middle; margin-right: 6px; }
.tokbar.out { background: var(--tool); }
.pass { background: var(--bg-fix); } .fail { background: var(--bg-err); }
details > summary { cursor: pointer; }
.toolbar { margin: 12px 0; } .toolbar button { margin-right: 8px; }
body.errors-only .item:not(.err):not(.fix) { display: none; }
"""

JS = """
(function () {
  var body = document.body;
  var onlyErr = document.getElementById('errors-only');
  if (onlyErr) onlyErr.addEventListener('click', function () {
    body.classList.toggle('errors-only');
    onlyErr.textContent = body.classList.contains('errors-only') ? 'show all steps' : 'show only steps with faults';
  });
  var expand = document.getElementById('expand-all');
  if (expand) expand.addEventListener('click', function () {
    var all = document.querySelectorAll('details');
    var open = expand.dataset.open !== '1';
    for (var i = 0; i < all.length; i++) all[i].open = open;
    expand.dataset.open = open ? '1' : '0';
    expand.textContent = open ? 'collapse all' : 'expand all';
  });
  body.setAttribute('data-ready', '1');
})();
"""


def esc(value: Any) -> str:
    """Text for the page: redacted, then HTML-escaped (quotes too, so it is safe inside attributes)."""
    return html.escape(redact("" if value is None else str(value)), quote=True)


def pre(value: Any) -> str:
    return f"<pre>{esc(value)}</pre>"


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{esc(text)}</span>'


def kv(items: dict[str, Any]) -> str:
    return '<div class="kv">' + "".join(f"<span><b>{esc(k)}</b> {esc(v)}</span>" for k, v in items.items()) + "</div>"


def table(headers: list[str], rows: list[list[str]], *, num: set[int] = frozenset(),  # type: ignore[assignment]
          row_class: list[str] | None = None) -> str:
    """A table; ``rows`` hold HTML (escape the cells first), ``num`` the right-aligned columns."""
    head = "".join(f'<th class="num">{esc(h)}</th>' if i in num else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_class[r]}"' if row_class and row_class[r] else ""
        body.append(f"<tr{cls}>" + "".join(f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>"
                                           for i, c in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def document(title: str, body: str) -> str:
    """The whole page: no external resource of any kind (no link, no src, no font), so it opens offline. Its
    content security policy runs only the page's own script (by hash) and fetches nothing: escaping keeps content
    from being markup, and should it ever fail, an injected script or handler still does not run."""
    digest = base64.b64encode(hashlib.sha256(JS.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
            f"<script>{JS}</script>\n</body></html>\n")
