"""The public API is pinned, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import keye_agent

EXPECTED = [
    "Agent", "AssistantTurn", "ContextPolicy", "DockerSandbox", "ExecResult", "GenerationSettings", "KeyeAgentError", "KeyeBackend", "Message", "OpenAIBackend",
    "RunResult", "SandboxConfig", "SandboxPool", "ScriptedBackend", "Tool", "ToolCall", "ToolOutput", "ToolRegistry", "ToolResult", "Trajectory", "TransformersBackend",
    "Usage", "load_model", "load_registry", "parse_tool_calls", "tool",
]


def test_public_names_are_pinned():
    assert sorted(n for n in keye_agent.__all__ if n != "__version__") == sorted(EXPECTED)


def test_every_public_name_resolves():
    for name in EXPECTED:
        assert getattr(keye_agent, name) is not None, name


def test_import_keye_agent_loads_no_heavy_dependency():
    code = (
        "import sys, keye_agent\n"
        "from keye_agent import Agent, ToolRegistry, tool, ScriptedBackend\n"
        "heavy = [m for m in ('torch', 'docker', 'xgrammar', 'transformers', 'triton') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
