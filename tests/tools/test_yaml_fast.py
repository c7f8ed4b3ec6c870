"""The fast YAML reader (rapidyaml) against the event composer it stands in for: on every file it accepts, the
same values (types included) and the same line and column for every value and key the event composer records;
everything else declined, so that the event composer reads it and reports its error. Timings are in
benchmarks/hardening.py, not here."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from keye_agent.errors import ConfigError
from keye_agent.tools import _yaml_fast
from keye_agent.tools._yaml_compose import compose
from keye_agent.tools.yaml_registry import load_registry

pytestmark = pytest.mark.skipif(not _yaml_fast.available(), reason="rapidyaml has no wheel for this platform")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
from hardening import registry_text  # noqa: E402  (the benchmark's generator of large registries)

ACCEPTED = {
    "mixed": "a: 1\np: 010\nq: 1.5\nr: \"a\\tb\\u00e9\"\ns: ${PORT}\nt: \"${PORT}\"\nu: {x: 1}\nv: 190:20:30\nw: 12.\n",
    "yaml 1.1 scalars": "a: yes\nb: ~\nc: 1e3\nd: 0x10\nf: 2001-12-14\ng:\nh: \"5\"\ni: '5'\nk: 1_000\nl: Off\n",
    "nested": "tools:\n  - name: a\n    args:\n      - - x\n        - y\n      - []\n      - {}\n    e: {}\n"
              "    f: []\n    g: >-\n      folded\n      text\n    h: |+\n      keep\n\n    i: 'multi\n      line'\n"
              "    j: plain\n      continued\n",
    "explicit document": "# comment\n---\na: 1\nb: [1, {c: 2, d: [3]}, 4]\ne: {f: g}\n",
    "crlf": "a: 1\r\nb:\r\n  - 2\r\n  - x\r\n",
    "unicode": "a: 'é'\nb: \"ü\"\nc: \"\\x41\\u263A\\U0001F600\"\nd: ünï\n",
    "empty values": "g:\nh: 1\na:\n  x:   # c\n  y: [b, ]\n  z: {b: }\nl:\n  -\n  - x\nm: {b: c, d}\n'q': \n",
    "empty collections": "\"k\":\n  - []\n  - {}\n  -\n",
    "explicit key": "? a\n: 1\n",
    "quoting": "a: 'x'\nb: \"y\"\n'c': 1\n\"d\": 2\ne: 'don''t'\nf: ''\ng: \"\"\nk: v # comment\nl: \"v # not\"\n",
    "variables": "x: ${A:-5}\ny: \"${A}\"\nz: pre${A}post\n",
    "numbers as keys": "1: x\n2.5: y\n",
    "quoted key that reads as a bool": "a:\n  'yes': 1\nb:\n  'no': 2\n",
}

DECLINED = {
    "anchor and alias": "a: &x 1\nb: *x\n",
    "tag": "a: !!str 5\n",
    "merge key": "<<: {a: 1}\nb: 2\n",
    "two documents": "a: b\n---\nc: d\n",
    "duplicate key": "a: b\na: c\n",
    "syntax error": "a: 'unclosed\n",
    "not finite": "a: .nan\n",
    "reserved indicator": "a: @x\n",
    "plain key read as a bool": "- {'no': 1}\n- {no: 2}\n",
    "plain key read as another number": "- {1_0: 2}\n",
    "tab": "a:\tb\n",
    "scalar document": "5\n",
    "deeper than the emitter": "a: " + "[" * 70 + "]" * 70 + "\n",
}


def same_as_the_event_composer(text: str) -> bool:
    """False where the fast reader declines; else assert it agrees with the event composer in full."""
    fast = _yaml_fast.compose_fast(text)
    if fast is None:
        return False
    value, values, keys = compose(text, "x.yaml", fast=False)
    fvalue, fvalues, fkeys = fast
    assert fvalue == value and repr(fvalue) == repr(value)
    wrong = [(p, pos, fvalues.get(p)) for p, pos in values.items() if fvalues.get(p) != pos]
    wrong += [(p, pos, fkeys.get(p)) for p, pos in keys.items() if fkeys.get(p) != pos]
    assert not wrong, wrong[:5]
    return True


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_what_the_fast_reader_accepts_reads_as_the_event_composer_reads_it(name: str) -> None:
    assert same_as_the_event_composer(ACCEPTED[name])


@pytest.mark.parametrize("name", sorted(DECLINED))
def test_what_it_cannot_reproduce_goes_to_the_event_composer(name: str) -> None:
    assert _yaml_fast.compose_fast(DECLINED[name]) is None


def test_every_registry_of_the_broken_corpus_and_the_examples_reads_the_same() -> None:
    files = sorted((HERE / "broken_yaml").glob("*.yaml")) + sorted((HERE.parents[1] / "examples").rglob("*.yaml"))
    accepted = [f.name for f in files if same_as_the_event_composer(f.read_text("utf-8", "replace"))]
    assert len(accepted) >= 0.8 * len(files), accepted  # most are plain registries: the fast path reads them


def test_a_large_registry_takes_the_fast_path_with_the_same_values_and_positions() -> None:
    text = registry_text(2 * _yaml_fast.FAST_MIN_CHARS, bad_last=False)
    value, values, keys = compose(text, "big.yaml")
    assert isinstance(values, _yaml_fast.TreePositions)  # the default for a file this size
    exact, exact_values, exact_keys = compose(text, "big.yaml", fast=False)
    assert value == exact
    rng = random.Random(7)
    for table, exact_table in ((values, exact_values), (keys, exact_keys)):
        for path in rng.sample(sorted(exact_table, key=repr), 400):
            assert table[path] == exact_table[path], path


def test_an_error_in_a_large_file_is_reported_at_its_line_with_nothing_printed(tmp_path: Path, capfd) -> None:
    """rapidyaml's own error handler prints C++ file names to stderr; the reader drops that print."""
    good = registry_text(_yaml_fast.FAST_MIN_CHARS + 1000, bad_last=False)
    lines = good.count("\n")
    for tail, pattern in (("  - name: 'unclosed\n", "YAML syntax error"),
                          ("  - name: t0\n    kind: htp\n", "'htp'")):
        p = tmp_path / "big.yaml"
        p.write_text(good + tail)
        with pytest.raises(ConfigError, match=pattern) as ei:
            load_registry(p, env={})
        assert ei.value.line is not None and ei.value.line > lines, (ei.value.line, lines)
    out, err = capfd.readouterr()
    assert "detected here" not in err and "ERROR" not in err, err[-500:]
