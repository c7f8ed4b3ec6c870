"""keye-agent: an agent framework around Kuaishou's Keye-VL-2.0.

Public names are imported lazily (PEP 562), so ``import keye_agent`` is cheap and pulls in none of torch, docker or
xgrammar; each name loads its subpackage on first use.

Example::

    from keye_agent import Agent, load_model, tool

    @tool
    def add(a: int, b: int) -> int:
        '''Add two integers.

        Args:
            a: The first number.
            b: The second number.
        '''
        return a + b

    agent = Agent(load_model("openai:qwen3-8b", base_url="http://localhost:8000/v1"), tools=[add])
    print(agent.run("What is 2 + 40?").final_answer)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from keye_agent._logging import install_log_redaction

__version__ = "0.1.0"

install_log_redaction()  # secrets never reach a log handler, whichever the application installs

# public name -> module that defines it (or (module, name there) for an alias)
_EXPORTS: dict[str, str | tuple[str, str]] = {
    "Agent": "keye_agent.agent",
    "AssistantTurn": "keye_agent.types",
    "ContextPolicy": "keye_agent.agent",
    "DockerSandbox": "keye_agent.sandboxes",
    "ExecResult": "keye_agent.sandboxes",
    "GenerationSettings": "keye_agent.types",
    "KeyeAgentError": "keye_agent.errors",
    "KeyeBackend": "keye_agent.backends.keye",
    "Message": "keye_agent.types",
    "OpenAIBackend": "keye_agent.backends.openai",
    "RunResult": "keye_agent.types",
    "SandboxConfig": "keye_agent.sandboxes",
    "SandboxPool": "keye_agent.sandboxes",
    "ScriptedBackend": "keye_agent.backends.scripted",
    "Tool": "keye_agent.tools",
    "ToolCall": "keye_agent.types",
    "ToolOutput": "keye_agent.tools",
    "ToolRegistry": "keye_agent.tools",
    "ToolResult": "keye_agent.types",
    "Trajectory": "keye_agent.types",
    "TransformersBackend": "keye_agent.backends.transformers",
    "Usage": "keye_agent.types",
    "load_model": "keye_agent.backends",
    "load_registry": "keye_agent.tools.yaml_registry",
    "parse_tool_calls": "keye_agent.backends.parsing",
    "tool": "keye_agent.tools",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'keye_agent' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from keye_agent.agent import Agent, ContextPolicy
    from keye_agent.backends import load_model
    from keye_agent.backends.keye import KeyeBackend
    from keye_agent.backends.openai import OpenAIBackend
    from keye_agent.backends.parsing import parse_tool_calls
    from keye_agent.backends.scripted import ScriptedBackend
    from keye_agent.backends.transformers import TransformersBackend
    from keye_agent.errors import KeyeAgentError
    from keye_agent.sandboxes import DockerSandbox, ExecResult, SandboxConfig, SandboxPool
    from keye_agent.tools import Tool, ToolOutput, ToolRegistry, tool
    from keye_agent.tools.yaml_registry import load_registry
    from keye_agent.types import (
        AssistantTurn,
        GenerationSettings,
        Message,
        RunResult,
        ToolCall,
        ToolResult,
        Trajectory,
        Usage,
    )
