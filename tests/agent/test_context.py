"""Context management: the conversation is kept inside the window, old steps are compacted, nothing silently."""

from __future__ import annotations

from keye_agent.agent import Agent, ContextPolicy, Conversation, DropOldSteps, ElideOldToolOutputs, Note
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.tools import tool
from keye_agent.types import AssistantTurn, Message, ToolCall


@tool
def page(n: int) -> str:
    """Read page n of a long report.

    Args:
        n: page number
    """
    return f"page {n}: " + " ".join(f"word{n}_{i}" for i in range(300))


def turns(k):
    return [AssistantTurn(tool_calls=[ToolCall(id=f"c{i}", name="page", arguments={"n": i})]) for i in range(k)]


def test_old_tool_outputs_are_elided_first_and_the_run_completes():
    be = ScriptedBackend(turns(6) + ["summary"], context_window=1300)
    agent = Agent(be, [page], max_steps=10, context=ContextPolicy(reserve_tokens=200, keep_recent_steps=2,
                                                                  strategies=[ElideOldToolOutputs()]))
    events = list(agent.stream("Summarise the report."))
    result = events[-1].result
    assert result.status == "completed"
    notes = [e.message for e in events if isinstance(e, Note)]
    assert notes and all("elided the output of tool 'page'" in n for n in notes)
    tool_texts = [m.text for m in result.trajectory.messages if m.role == "tool"]
    assert tool_texts[0].startswith("[elided to fit the context window:")
    assert tool_texts[-1].startswith("page 5:")  # the recent steps are untouched
    # every model call fitted the window: the scripted backend saw the prompt it reported
    for step in result.trajectory.steps:
        assert step.usage.prompt_tokens <= 1300 - 200
    # the trajectory keeps the elided outputs whole
    assert result.trajectory.steps[0].tool_results[0].content.startswith("page 0: word0_0")


def test_whole_old_steps_are_dropped_with_one_note_when_eliding_is_not_enough():
    be = ScriptedBackend(turns(8) + ["done"], context_window=900)
    agent = Agent(be, [page], max_steps=12, context=ContextPolicy(reserve_tokens=100, keep_recent_steps=1))
    result = agent.run("Read everything.")
    assert result.status == "completed"
    msgs = result.trajectory.messages
    notes = [m.text for m in msgs if m.text.startswith("[context note:")]
    assert len(notes) == 1 and "earlier steps were removed" in notes[0]
    assert msgs[0].text == "Read everything."  # the task itself is never compacted
    # assistant tool calls and their results are removed together: no orphan tool message
    ids_called = {c.id for m in msgs if m.tool_calls for c in m.tool_calls}
    assert all(m.tool_call_id in ids_called for m in msgs if m.role == "tool")
    assert any("old steps" in n for s in result.trajectory.steps for n in s.notes)


def test_a_window_too_small_for_the_task_ends_the_run_with_a_status():
    be = ScriptedBackend(["never"], context_window=50)
    result = Agent(be, [], context=ContextPolicy(reserve_tokens=40)).run("a task " * 100)
    assert result.status == "max_tokens" and "even after compaction" in result.error


def test_conversation_counts_tokens_once_per_message():
    counted = []

    def counter(ms):
        counted.extend(ms)
        return 10

    conv = Conversation(counter, fixed_tokens=5)
    for i in range(5):
        conv.append(Message.user(str(i)))
    assert conv.total == 55 and len(counted) == 5
    conv.replace(0, Message.user("x"))
    conv.delete(1, 3)
    assert conv.total == 35 and len(conv.messages) == 3


def test_drop_old_steps_folds_repeated_drops_into_one_note():
    conv = Conversation(lambda ms: 100)
    conv.append(Message.user("task"))
    for i in range(6):
        conv.append(Message.assistant(None, [ToolCall(id=str(i), name="page", arguments={"n": i})]))
        conv.append(Message.tool(str(i), "page", "x"))
    s = DropOldSteps()
    assert s(conv, 900, 1, 1) == ["removed 3 old steps (3 in all) to fit the context window"]
    assert conv.total <= 900
    assert s(conv, 500, 1, 1) == ["removed 2 old steps (5 in all) to fit the context window"]
    notes = [m for m in conv.messages if m.text.startswith("[context note:")]
    assert len(notes) == 1 and notes[0].text.startswith("[context note: 5 earlier steps")
    assert conv.total <= 500 and len(conv.step_starts()) == 1
