"""Helpers shared by the tau tests."""

from __future__ import annotations

from typing import Any


def json_pointer_diff(before: Any, after: Any, path: str = "") -> dict[str, Any]:
    """Changes from ``before`` to ``after`` as RFC 6901 paths mapped to their new value: objects are compared key
    by key; anything else (lists included) that differs maps to its whole new value; a removed key maps to
    "<deleted>" (the notation of ../shared/tau2/expected/)."""
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
