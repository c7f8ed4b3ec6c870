"""NL assertions judged by a model: it reads the conversation and says, for each expected outcome, whether the
agent met it, as a JSON object."""

from __future__ import annotations

import json
import re
from typing import Any

from keye_agent.types import GenerationSettings, Message, ModelBackend

from .messages import TauMessage

JUDGE_PROMPT = """\
You grade a customer-service conversation against a list of expected outcomes.
Judge each outcome on its own, from what the agent said and did in the conversation only.
Answer with one JSON object and nothing else:
{"results": [{"expectedOutcome": "<the outcome, copied>", "reasoning": "<one or two sentences>",
              "metExpectation": true or false}]}"""

_JSON = re.compile(r"\{.*\}", re.DOTALL)


async def judge_nl_assertions(judge: ModelBackend, messages: list[TauMessage],
                              assertions: list[str]) -> list[dict[str, Any]]:
    """One check per assertion: ``{"nl_assertion", "met", "justification"}``. An answer that cannot be read
    counts as not met, with the reason in the justification."""
    convo = "\n".join(f"{m.role}: {m.content}" for m in messages if m.role in ("user", "assistant") and m.has_text)
    listing = "\n".join(f"- {a}" for a in assertions)
    prompt = [Message.system(JUDGE_PROMPT),
              Message.user(f"Conversation:\n{convo}\n\nExpected outcomes:\n{listing}")]
    turn = await judge.agenerate(prompt, None, GenerationSettings(temperature=0.0, max_tokens=1024))
    verdicts: dict[str, tuple[bool, str]] = {}
    problem = None
    m = _JSON.search(turn.text or "")
    try:
        data = json.loads(m.group(0)) if m else None
        for r in (data or {}).get("results", []):
            verdicts[str(r.get("expectedOutcome", "")).strip()] = (r.get("metExpectation") is True,
                                                                   str(r.get("reasoning", "")))
    except (json.JSONDecodeError, AttributeError, TypeError) as e:
        problem = f"the judge's answer is not the JSON asked for ({e})"
    out = []
    for i, a in enumerate(assertions):
        got = verdicts.get(a.strip())
        if got is None and len(verdicts) == len(assertions):
            got = list(verdicts.values())[i]  # outcomes reworded by the judge: fall back to their order
        if got is None:
            out.append({"nl_assertion": a, "met": False,
                        "justification": problem or "the judge gave no verdict for this outcome"})
        else:
            out.append({"nl_assertion": a, "met": got[0], "justification": got[1]})
    return out
