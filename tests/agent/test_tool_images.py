"""A tool's images go back to the model: the tool message the model sees next holds the tool's text and its
ImagePart attachments (as a sandbox plot does). The model is scripted (it records what it is shown); the registry
and the loop are the real ones."""

from __future__ import annotations

from keye_agent.agent import Agent
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tools import ToolOutput, ToolRegistry, tool
from keye_agent.types import AssistantTurn, ImagePart, TextPart, ToolCall

PNG = "iVBORw0KGgo="  # the content does not matter to the loop


def test_tool_images_reach_the_next_model_call():
    @tool
    def plot(title: str) -> ToolOutput:
        """Draw a plot.

        Args:
            title: the plot's title.
        """
        return ToolOutput(content=f"drew {title}", attachments=[ImagePart(data=PNG)])

    seen = []

    def answer(messages, tools):
        seen.append(list(messages))
        return AssistantTurn(text="The plot rises.")

    backend = ScriptedBackend([AssistantTurn(tool_calls=[ToolCall(id="c1", name="plot", arguments={"title": "x"})]),
                               answer])
    result = Agent(backend, ToolRegistry([plot])).run("Plot x and describe it.")
    assert result.ok and result.final_answer == "The plot rises."
    tool_msg = [m for m in seen[0] if m.role == "tool"][0]
    assert isinstance(tool_msg.content, list)
    assert tool_msg.content[0] == TextPart(text="drew x")
    assert tool_msg.content[1] == ImagePart(data=PNG)
    assert tool_msg.text == "drew x"
