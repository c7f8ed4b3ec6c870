"""`@tool`: JSON Schema from type hints and docstrings, for every supported type, and definition-time errors."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from keye_agent.errors import ToolDefinitionError
from keye_agent.tools import ToolRegistry, tool
from keye_agent.tools.decorator import parse_docstring
from keye_agent.types import ToolCall


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str = Field(description="Street and number")
    city: str = Field(description="City name")


class Order(BaseModel):
    items: list[str] = Field(description="Product ids")
    ship_to: Address = Field(description="Delivery address")


@tool
def everything(
    s: str,
    i: int,
    f: float,
    b: bool,
    lit: Literal["a", "b"],
    color: Color,
    maybe: int | None,
    tags: list[str],
    scores: dict[str, float],
    order: Order,
    n: int = 3,
    opt: str | None = None,
) -> str:
    """Exercise every supported argument type.

    Longer explanation that belongs to the description.

    Args:
        s: a string
        i: an integer
        f: a float
        b: a boolean
        lit: one of two letters
        color: a colour
        maybe: an optional integer
        tags: some tags,
            continued on a second line
        scores: named scores
        order: a nested model
        n: with a default
        opt: optional with None default

    Returns:
        A summary.
    """
    return f"{type(color).__name__}:{color.value} {type(order).__name__}:{order.ship_to.city} n={n}"


def props():
    return everything.parameters["properties"]


def test_primitive_types():
    p = props()
    assert p["s"] == {"type": "string", "description": "a string"}
    assert p["i"]["type"] == "integer"
    assert p["f"]["type"] == "number"
    assert p["b"]["type"] == "boolean"


def test_literal_enum_optional():
    p = props()
    assert p["lit"]["enum"] == ["a", "b"]
    # an Enum becomes a $ref into $defs with its values
    ref = p["color"]["$ref"].split("/")[-1]
    assert everything.parameters["$defs"][ref]["enum"] == ["red", "green"]
    assert {"type": "integer"} in p["maybe"]["anyOf"] and {"type": "null"} in p["maybe"]["anyOf"]


def test_collections_and_nested_models():
    p = props()
    assert p["tags"] == {"type": "array", "items": {"type": "string"}, "description": "some tags, continued on a second line"}
    assert p["scores"]["additionalProperties"] == {"type": "number"}
    order_def = everything.parameters["$defs"][p["order"]["$ref"].split("/")[-1]]
    assert set(order_def["required"]) == {"items", "ship_to"}
    assert "title" not in order_def  # pydantic's noise titles are stripped


def test_defaults_and_required():
    params = everything.parameters
    assert props()["n"]["default"] == 3
    assert set(params["required"]) == {"s", "i", "f", "b", "lit", "color", "maybe", "tags", "scores", "order"}
    assert params["additionalProperties"] is False
    assert everything.description.startswith("Exercise every supported argument type.")
    assert "Longer explanation" in everything.description
    assert "A summary" not in everything.description


def test_nested_models_and_enums_are_coerced_before_the_call():
    reg = ToolRegistry([everything])
    args = {"s": "x", "i": 1, "f": 1.5, "b": True, "lit": "a", "color": "green", "maybe": None, "tags": [],
            "scores": {"q": 1.0}, "order": {"items": ["p1"], "ship_to": {"street": "1 Main", "city": "Oslo"}}}
    [res] = reg.dispatch_sync([ToolCall(id="1", name="everything", arguments=args)])
    assert res.ok, res.error
    assert res.content == "Color:green Order:Oslo n=3"


def test_annotated_and_sphinx_descriptions():
    @tool
    def f(a: Annotated[int, Field(description="from Field")], b: Annotated[str, "from a string"]) -> int:
        """Do f."""
        return a

    assert f.parameters["properties"]["a"]["description"] == "from Field"
    assert f.parameters["properties"]["b"]["description"] == "from a string"

    @tool
    def g(x: int) -> int:
        """Do g.

        :param x: sphinx style
        """
        return x

    assert g.parameters["properties"]["x"]["description"] == "sphinx style"


def test_missing_hint_is_a_definition_error():
    with pytest.raises(ToolDefinitionError, match=r"argument 'x' has no type hint"):

        @tool
        def f(x) -> int:  # type: ignore[no-untyped-def]
            """Do f.

            Args:
                x: something
            """
            return 1


def test_missing_argument_description_is_a_definition_error():
    with pytest.raises(ToolDefinitionError, match=r"argument 'y' has no description"):

        @tool
        def f(x: int, y: int) -> int:
            """Do f.

            Args:
                x: something
            """
            return 1


def test_missing_docstring_and_varargs_are_definition_errors():
    with pytest.raises(ToolDefinitionError, match="no docstring"):

        @tool
        def f() -> int:
            return 1

    with pytest.raises(ToolDefinitionError, match=r"\*args"):

        @tool
        def g(*args: int) -> int:
            """Do g."""
            return 1


def test_options_are_kept():
    @tool(name="place_order", mutates_state=True, timeout_s=5, retries=0)
    def f(item: str) -> str:
        """Place an order.

        Args:
            item: product id
        """
        return item

    assert f.name == "place_order" and f.mutates_state and f.needs_approval and f.timeout_s == 5
    assert f.openai_schema()["function"]["name"] == "place_order"


def test_parse_docstring_google_with_types():
    desc, args = parse_docstring("""Top.

    Args:
        city (str): the city
        days (int, optional): how many days
    """)
    assert desc == "Top."
    assert args == {"city": "the city", "days": "how many days"}
