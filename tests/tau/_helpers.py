"""Helpers shared by the tau tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

EXPECTED = Path(__file__).resolve().parent / "fixtures" / "tau2_expected"


def expected_end_states(domain: str) -> dict[str, Any]:
    """``fixtures/tau2_expected/<domain>.json[.gz]``: per task, what tau2-bench's own code made of its gold actions
    (see the README there)."""
    plain, packed = EXPECTED / f"{domain}.json", EXPECTED / f"{domain}.json.gz"
    return json.loads(plain.read_text() if plain.is_file() else gzip.decompress(packed.read_bytes()))


def json_pointer_diff(before: Any, after: Any, path: str = "") -> dict[str, Any]:
    """Changes from ``before`` to ``after`` as RFC 6901 paths mapped to their new value: objects are compared key
    by key; anything else (lists included) that differs maps to its whole new value; a removed key maps to
    "<deleted>" (the notation of fixtures/tau2_expected/)."""
    if before is after:
        return {}  # the same object (a LazyDB's untouched record): nothing changed
    if isinstance(before, dict) and isinstance(after, dict):
        out: dict[str, Any] = {}
        for k in before:
            p = f"{path}/{str(k).replace('~', '~0').replace('/', '~1')}"
            if k not in after:
                out[p] = "<deleted>"
            else:
                out.update(json_pointer_diff(before[k], after[k], p))
        for k in after:
            if k not in before:
                out[f"{path}/{str(k).replace('~', '~0').replace('/', '~1')}"] = after[k]
        return out
    return {} if before == after else {path: after}
