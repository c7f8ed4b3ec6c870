"""Tools: `Tool`, `@tool`, `ToolRegistry`, and lookup of built-in tools through entry points."""

from .base import Tool, ToolOutput
from .builtins import available_builtins, load_builtin
from .decorator import tool
from .registry import ToolRegistry

__all__ = ["Tool", "ToolOutput", "ToolRegistry", "available_builtins", "load_builtin", "tool"]
