"""Time and memory of the hostile inputs of issue 24, each beside the baseline it replaced, measured in the same run.

* YAML registries: a 10 MB file of ~52,000 tools whose last line is wrong, read to its error (target: within 2 s),
  the reading alone by the fast reader (rapidyaml) and by the libyaml event composer it falls back to,
  and the same file without the bad entry loaded whole; the baseline is PyYAML's pure-Python SafeLoader composing
  nodes plus jsonschema over the whole document (what read_yaml and schema_errors did), on 1 MB (it is linear, and
  10 MB takes minutes); then a 9x9 alias bomb beside PyYAML composing a 6-level bomb (the 9-level one passes 3 GB).
* Decompression: ``Content-Encoding: gzip, gzip`` over 256 MiB, from a loopback server, read by fetch_url with a
  1 MB cap; the baseline is httpx's own ``aiter_bytes`` with the same cap; peak traced memory of each.
* The Hermes parser on hostile output, in ms per 100 KB (target: 50 or less).

Checks come first: the error is the expected one, the bomb is refused, the cap holds. CPU time is reported beside
wall time because the shared dev machine is loaded by other work; read the ratios.

    .venv/bin/python benchmarks/hardening.py
"""

from __future__ import annotations

import asyncio
import gzip
import platform
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keye_agent.errors import ConfigError  # noqa: E402
from keye_agent.formats import hermes  # noqa: E402
from keye_agent.search import Fetcher  # noqa: E402
from keye_agent.tools._yaml_compose import compose  # noqa: E402
from keye_agent.tools._yaml_fast import TreePositions  # noqa: E402
from keye_agent.tools.netguard import NetPolicy  # noqa: E402
from keye_agent.tools.registry_schema import _validator  # noqa: E402
from keye_agent.tools.yaml_registry import load_registry  # noqa: E402
from tests.tools.loopback import reply, serve  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []


def registry_text(n_bytes: int, bad_last: bool) -> str:
    parts = ["version: 1\nnetwork: {allow_loopback: true}\ntools:\n"]
    size, i = len(parts[0]), 0
    while size < n_bytes:
        s = (f"  - name: t{i}\n    kind: http\n    description: tool number {i} that fetches one thing\n"
             f"    url: http://127.0.0.1/a/{{id}}\n    arguments:\n      id: {{type: string, description: the id, "
             f"in: path}}\n")
        parts.append(s)
        size, i = size + len(s), i + 1
    if bad_last:
        parts.append("  - name: bad\n    kind: htp\n    description: x\n    url: http://127.0.0.1/\n")
    return "".join(parts)


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, CPU s, result or the exception raised)."""
    w, c = time.perf_counter(), time.process_time()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - the error is the result being measured
        out = e
    return time.perf_counter() - w, time.process_time() - c, out


def old_read(text: str) -> Any:
    """The former path: PyYAML's SafeLoader node tree, then values, then jsonschema over the whole document."""
    loader = yaml.SafeLoader(text)
    try:
        data = loader.construct_document(loader.get_single_node())
    finally:
        loader.dispose()
    return next(iter(_validator().iter_errors(data)), None)


def yaml_rows(tmp: Path) -> None:
    for mb in (1, 10):
        p = tmp / f"bad{mb}.yaml"
        p.write_text(registry_text(mb * 10**6, bad_last=True))
        w, c, err = timed(lambda p=p: load_registry(p, env={}))
        assert isinstance(err, ConfigError) and "tools[" in str(err) and "'htp'" in str(err), err
        ROWS.append((f"YAML {mb} MB, error on the last line", f"{w:.2f} s ({c:.2f} s CPU)", "", f"line {err.line}"))
    big = (tmp / "bad10.yaml").read_text()
    w, c, out = timed(lambda: compose(big, "bad10.yaml"))
    assert not isinstance(out, Exception) and isinstance(out[1], TreePositions), out
    ROWS.append(("  reading alone: rapidyaml fast reader, 10 MB", f"{w:.2f} s ({c:.2f} s CPU)", "", "values"))
    w, c, out = timed(lambda: compose(big, "bad10.yaml", fast=False))
    assert not isinstance(out, Exception), out
    ROWS.append(("  baseline: libyaml event composer, 10 MB", f"{w:.2f} s ({c:.2f} s CPU)", "",
                 "values + positions"))
    text = registry_text(10**6, bad_last=True)
    w, c, err = timed(lambda: old_read(text))
    assert err is not None and "htp" in str(err.message), err
    ROWS.append(("  baseline: SafeLoader + jsonschema, 1 MB", f"{w:.2f} s ({c:.2f} s CPU)", "", "x10 for 10 MB"))
    ok = tmp / "ok10.yaml"
    ok.write_text(registry_text(10 * 10**6, bad_last=False))
    w, c, reg = timed(lambda: load_registry(ok, env={}))
    assert not isinstance(reg, Exception), reg
    ROWS.append(("YAML 10 MB valid, every tool built", f"{w:.2f} s ({c:.2f} s CPU)", "", f"{len(reg)} tools"))

    bomb = "a: &a [" + ",".join(['"lol"'] * 9) + "]\n" + "".join(
        f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9) + "]\n" for i in range(1, 9))
    tracemalloc.start()
    w, c, err = timed(lambda: compose(bomb + "tools: *i\n", "bomb.yaml"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert isinstance(err, ConfigError) and "alias bomb" in str(err), err
    ROWS.append((f"alias bomb 9x9 ({len(bomb)} B), refused", f"{w * 1000:.0f} ms ({c * 1000:.0f} ms CPU)",
                 f"{peak / 2**20:.1f} MiB", f"line {err.line}"))
    small = "\n".join(bomb.splitlines()[:6]) + "\n"
    tracemalloc.start()
    w, c, _ = timed(lambda: yaml.safe_load(small + "tools: *f\n"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ROWS.append(("  baseline: yaml.safe_load, 6 levels (9**6)", f"{w * 1000:.0f} ms ({c * 1000:.0f} ms CPU)",
                 f"{peak / 2**20:.1f} MiB", "9 levels: > 3 GB"))


def decoding_rows() -> None:
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    spaces = b" " * (1 << 20)
    body = gzip.compress(b"".join([*(inner.compress(spaces) for _ in range(256)), inner.flush()]), 9)

    def bombed(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, body, {"Content-Type": "text/plain", "Content-Encoding": "gzip, gzip"})

    async def httpx_capped(url: str, cap: int) -> int:
        got = 0
        async with httpx.AsyncClient() as client, client.stream("GET", url) as r:
            async for chunk in r.aiter_bytes():
                got += len(chunk)
                if got >= cap:
                    break
        return got

    with serve({"/bomb": bombed}) as base:
        fetcher = Fetcher(NetPolicy(allow_loopback=True), max_bytes=1_000_000)
        for name, run in (("fetch_url, gzip x2 over 256 MiB, 1 MB cap", lambda: fetcher.fetch(f"{base}/bomb")),
                          ("  baseline: httpx aiter_bytes, same cap", lambda: httpx_capped(f"{base}/bomb", 10**6))):
            tracemalloc.start()
            w, _, out = timed(lambda run=run: asyncio.run(run()))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert not isinstance(out, Exception), out
            read = out.bytes_read if hasattr(out, "bytes_read") else out
            ROWS.append((name, f"{w * 1000:.0f} ms", f"{peak / 2**20:.1f} MiB", f"{read:,} B kept"))
    print(f"({len(body):,} bytes on the wire)")


def parser_rows() -> None:
    unclosed = ('<tool_call>\n{"name": "f", "arguments": {"a": "x' + "y" * 40 + '"\n') * 800
    trailing = '<tool_call>{"name": "f", "arguments": {"v": [' + "1, " * 330_000 + "]}}</tool_call>"
    lenient = "<tool_call>\n{'name': 'f', 'arguments': {'a': [" + ", ".join(["'x'"] * 20_000) + ",]}}\n</tool_call>"
    deep = '<tool_call>{"name": "f", "arguments": ' + "{'a': " * 100_000 + "1" + "}" * 100_000 + "}</tool_call>"
    huge = "<tool_call>\n[" + ", ".join(['{"a": 1, "b": "xx"}'] * 500_000) + ",]\n</tool_call>"
    for name, text in (("800 unclosed <tool_call> blocks", unclosed), ("trailing comma, 1 MB array", trailing),
                       ("single quotes + trailing comma", lenient), ("100,000-deep Python literal", deep),
                       ("10 MB output (past the parser cap)", huge)):
        runs = [timed(lambda text=text: hermes.parse(text)) for _ in range(3)]
        wall, cpu, out = min(r[0] for r in runs), min(r[1] for r in runs), runs[-1][2]
        what = type(out).__name__ if isinstance(out, Exception) else f"{len(out.calls)} call(s), {len(out.errors)} error(s)"
        ROWS.append((f"parse: {name} ({len(text) // 1000:,} kB)", f"{wall * 1000:.1f} ms ({cpu * 1000:.1f} ms CPU)",
                     f"{cpu * 1000 / (len(text) / 100_000):.1f} ms CPU/100 kB", what))


def calibration() -> float:
    """CPU seconds of a 10-million-step Python loop, to compare machines: the CPU figures scale with it."""
    c = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.process_time() - c


def main() -> None:
    print(f"python {platform.python_version()}, {platform.machine()}, libyaml {yaml.__with_libyaml__}, "
          f"10M-step loop {calibration():.2f} s CPU")
    with tempfile.TemporaryDirectory() as d:
        yaml_rows(Path(d))
    decoding_rows()
    parser_rows()
    print(f"\n{'case':<48}{'time':>24}{'memory / rate':>20}  note")
    for name, t, m, note in ROWS:
        print(f"{name:<48}{t:>24}{m:>20}  {note}")


if __name__ == "__main__":
    main()
