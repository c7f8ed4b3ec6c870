"""Limits of the YAML registry reader (issue 24 item 5) that a file in broken_yaml/ cannot show: deep nesting made
on the fly, a symlink loop, the size cap, and anchors and merges that still read as PyYAML reads them (with the
positions of merged keys). Timings are in benchmarks/hardening.py, not here."""

from __future__ import annotations

import re
import textwrap
import tracemalloc
from pathlib import Path

import pytest
import yaml

from keye_agent.errors import ConfigError
from keye_agent.tools import yaml_source
from keye_agent.tools._yaml_compose import ALIAS_BUDGET, MAX_DEPTH, compose
from keye_agent.tools.yaml_registry import load_registry, validate_registry_file


def _fails(path: Path, pattern: str) -> ConfigError:
    with pytest.raises(ConfigError, match=pattern) as ei:
        load_registry(path, env={})
    problems = validate_registry_file(path, env={})
    assert problems and re.search(pattern, problems[0]), problems
    return ei.value


@pytest.mark.parametrize("style", ["block", "flow"])
def test_3000_deep_nesting_is_a_config_error_at_its_line(tmp_path: Path, style: str) -> None:
    p = tmp_path / "deep.yaml"
    if style == "block":
        p.write_text("version: 1\ntools:\n" + "".join(" " * (2 * i + 2) + f"k{i}:\n" for i in range(3000)))
    else:
        p.write_text("version: 1\ntools: " + "[" * 3000 + "]" * 3000 + "\n")
    err = _fails(p, r"nested more than|nesting depth")
    assert err.file == str(p) and err.line == (MAX_DEPTH + 2 if style == "block" else 2)


def test_a_symlink_loop_is_a_config_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.symlink_to(b)
    b.symlink_to(a)
    _fails(a, r"cannot read registry file .*a\.yaml")
    main = tmp_path / "main.yaml"
    main.write_text("version: 1\ninclude: [a.yaml]\ntools: []\n")
    err = _fails(main, r"included file 'a\.yaml' is a symlink that loops")
    assert (err.line, err.column) == (2, 11)


def test_a_file_past_the_size_cap_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_source, "MAX_FILE_BYTES", 100)
    p = tmp_path / "big.yaml"
    p.write_text("version: 1\ntools: []\n" + "# padding\n" * 20)
    _fails(p, r"is \d+ bytes; the most a registry file may hold is 100.*include:")


def test_the_alias_bomb_fails_fast_and_small() -> None:
    bomb = (Path(__file__).parent / "broken_yaml" / "50_alias_bomb.yaml").read_text()
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="alias bomb"):
            compose(bomb, "bomb.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # PyYAML's composer passed 3 GB on this file


def test_aliases_within_the_budget_are_shared_not_copied() -> None:
    text = "base: &b {x: [1, 2, 3]}\n" + "".join(f"k{i}: *b\n" for i in range(ALIAS_BUDGET // 10))
    data, values, _ = compose(text, "ok.yaml")
    assert data["k0"] is data["base"] and values[("k7", "x", 2)] == (1, 21)  # the anchor's position


def test_anchors_and_merges_read_as_pyyaml_reads_them(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        common: &common {kind: http, timeout_s: 5, retries: 1}
        second: &second {retries: 2, mutates_state: false}
        tools:
          - <<: *common
            name: a
            retries: 0
          - {<<: {kind: http}, name: c, n: !!int "7", f: 1.5, t: yes, d: 2026-12-03, s: "5", z: ~}
        """)
    data, values, keys = compose(text, "m.yaml")
    assert data == yaml.safe_load(text)
    # a list of merges: earlier mappings win, as the merge-key spec says
    listed, _, _ = compose(text + "  - <<: [*second, *common]\n    name: b\n", "m.yaml")
    assert listed["tools"][-1] == {"kind": "http", "timeout_s": 5, "retries": 2, "mutates_state": False, "name": "b"}
    assert values[("tools", 0, "timeout_s")] == (1, 41)  # merged from the anchor: its line
    assert keys[("tools", 0, "retries")] == (6, 5)  # the explicit key wins, at its own line


def test_a_merged_value_that_fails_the_schema_points_at_the_anchor(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text(textwrap.dedent("""\
        version: 1
        tools:
          - &base {name: a, kind: http, description: d, url: "http://127.0.0.1/", timeout_s: slow}
          - <<: *base
            name: b
        """))
    problems = validate_registry_file(p, env={})
    assert [x.split(": ", 1)[0] for x in problems] == [f"{p}:3:86", f"{p}:3:86"], problems
    assert "tools[1].timeout_s is str 'slow'" in problems[1]


def test_application_tags_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "tag.yaml"
    p.write_text("version: 1\ntools: !!python/object:os.system {}\n")
    err = _fails(p, r"unsupported YAML tag")
    assert (err.line, err.column) == (2, 8)
