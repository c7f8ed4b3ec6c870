"""The ``calculate`` tool's arithmetic, shared by the tau2 domains: numbers, ``+ - * /`` (also ``//`` and ``**``,
which the same characters spell), unary signs and parentheses, evaluated without ``eval`` and rounded to two
decimals as tau2-bench's tool does."""

from __future__ import annotations

import ast
import operator

ALLOWED = set("0123456789+-*/(). ")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    raise ValueError("Invalid expression")


def calculate(expression: str) -> str:
    """The value of an arithmetic expression, as text rounded to two decimals ("4.0" for "2 + 2")."""
    if not all(ch in ALLOWED for ch in expression):
        raise ValueError("Invalid characters in expression")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"Invalid expression: {e.msg}") from None
    return str(round(float(_value(tree.body)), 2))
