"""Argument validation takes jsonschema-rs for the common case and jsonschema for every refusal: the two must agree
on what is valid, or a call would pass that the worded check refuses. Checked over schemas of the kinds tools
declare (Python signatures, YAML registries, OpenAPI) and arguments on both sides of each keyword."""

from __future__ import annotations

import pytest

from keye_agent.errors import ToolValidationError
from keye_agent.tools import Tool, ToolRegistry
from keye_agent.types import ToolCall

SCHEMAS = {
    "integer": {"type": "integer", "minimum": 0, "maximum": 10},
    "number exclusive": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5},
    "string bounds": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-zé]+$"},
    "format is an annotation": {"type": "string", "format": "email"},
    "enum": {"enum": ["a", "b", 3, None]},
    "array": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "uniqueItems": True},
    "nested object": {"type": "object", "properties": {"a": {"type": "object", "properties": {
        "b": {"type": "boolean"}}, "required": ["b"], "additionalProperties": False}}},
    "anyOf": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 5}]},
    "nullable": {"type": ["string", "null"]},
    "defs and ref": {"type": "array", "items": {"$ref": "#/$defs/p"}},
}

VALUES = [0, 1, 5, 10, 11, -1, 1.0, 1.5, 2.5, 0.0, True, False, None, "", "a", "ab", "abcd", "abcde", "éa", "A1",
          "me@example.com", "not an email", "b", 3, [], [1], [1, 1], [1, "x"], [2, 3], {}, {"a": {"b": True}},
          {"a": {"b": 1}}, {"a": {}}, {"a": {"b": False, "c": 1}}, 2**70, -(2**70)]


def _tool(schema: dict) -> Tool:
    params = {"type": "object", "properties": {"v": schema}, "required": ["v"], "additionalProperties": False,
              "$defs": {"p": {"type": "integer", "minimum": 1}}}
    return Tool(name="t", description="d", parameters=params, fn=lambda v: "ok", inline=True)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_jsonschema_rs_and_jsonschema_agree_on_what_is_valid(name: str) -> None:
    t = _tool(SCHEMAS[name])
    assert t.fast_validator is not None
    for value in VALUES:
        args = {"v": value}
        slow = not list(t.validator.iter_errors(args))
        try:
            fast = t.fast_validator.is_valid(args)
        except (ValueError, TypeError, OverflowError):
            continue  # the registry then asks jsonschema
        assert fast == slow, (name, value, fast, slow)


def test_a_refused_call_is_worded_by_jsonschema_and_exotic_values_take_the_slow_path() -> None:
    reg = ToolRegistry([_tool(SCHEMAS["integer"])])
    with pytest.raises(ToolValidationError, match="11 is greater than the maximum of 10"):
        reg.validate(ToolCall(id="c", name="t", arguments={"v": 11}))
    # a tuple (the lenient parser's Python literals can make one) is no JSON value jsonschema-rs reads
    with pytest.raises(ToolValidationError, match="is not of type 'integer'"):
        reg.validate(ToolCall(id="c", name="t", arguments={"v": (1, 2)}))
    assert reg.validate(ToolCall(id="c", name="t", arguments={"v": 7}))[1] == {"v": 7}
