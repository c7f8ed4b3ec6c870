"""The JSONPath subset used by ``response.select`` in YAML registries."""

from __future__ import annotations

import pytest

from keye_agent.tools.jsonpath import JsonPath, JsonPathError

DATA = {
    "near": "Maple Street 12",
    "stores": [
        {"id": "s4", "open_now": False, "distance_km": 0.38, "tags": ["organic"]},
        {"id": "s1", "open_now": True, "distance_km": 1.41, "owner": {"name": "Ana"}},
        {"id": "s3", "open_now": True, "distance_km": 2.53},
    ],
    "meta": {"page": 1, "next": None},
}


@pytest.mark.parametrize(("expr", "expected"), [
    ("$", DATA),
    ("$.near", "Maple Street 12"),
    ("$['near']", "Maple Street 12"),
    ("$.stores[0].id", "s4"),
    ("$.stores[-1].id", "s3"),
    ("$.stores[*].id", ["s4", "s1", "s3"]),
    ("$.stores[1:].id", ["s1", "s3"]),
    ("$.stores[:1].distance_km", [0.38]),
    ("$.meta.*", [1, None]),
    ("$..name", ["Ana"]),
    ("$..id", ["s4", "s1", "s3"]),
    ("$.stores[?(@.open_now == true)].id", ["s1", "s3"]),
    ("$.stores[?(@.distance_km < 2)].id", ["s4", "s1"]),
    ("$.stores[?(@.id != 's1')].id", ["s4", "s3"]),
    ("$.stores[?(@.owner.name == \"Ana\")].id", ["s1"]),
    ("$.stores[?(@.owner)].id", ["s1"]),
    ("$.stores[?(@.id > 3)].id", []),  # a string compared with a number matches nothing
    ("$.stores[*].tags[0]", ["organic"]),
])
def test_select(expr: str, expected: object) -> None:
    assert JsonPath(expr).select(DATA) == expected


def test_missing_single_value_names_the_step() -> None:
    with pytest.raises(KeyError, match="'nope'"):
        JsonPath("$.stores[0].nope").select(DATA)
    with pytest.raises(KeyError, match="7"):
        JsonPath("$.stores[7]").select(DATA)
    assert JsonPath("$.stores[*].nope").select(DATA) == []


@pytest.mark.parametrize(("expr", "position", "message"), [
    ("stores", 0, "starts with '\\$'"),
    ("$.", 1, "followed by a key name"),
    ("$..", 1, "'..' must be followed"),
    ("$.stores[", 8, "unclosed"),
    ("$.stores[abc]", 8, "cannot read \\[abc\\]"),
    ("$.stores[?(@.x ~ 1)]", 8, "a filter looks like"),
    ("$.stores!", 8, "unexpected '!'"),
])
def test_parse_errors(expr: str, position: int, message: str) -> None:
    with pytest.raises(JsonPathError, match=message) as ei:
        JsonPath(expr)
    assert ei.value.position == position
