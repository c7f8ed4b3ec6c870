"""An agent answers a question from an offline document collection and cites the URLs it used.

No network is needed: ``web_search`` runs BM25 over examples/corpus/ (markdown, HTML and text files; PDFs work too)
and ``fetch_url`` reads those documents by their URL, refusing anything outside the corpus.

    python -m examples.search_offline                                  # the demo model (once the CLI provides it)
    python -m examples.search_offline --model openai:NAME --base-url http://localhost:8000/v1
    python -m examples.search_offline --model scripted                 # a fixed procedure: the mechanics, not a model
    python -m examples.search_offline --corpus ~/papers --question "..."

``--model`` goes through ``keye_agent.cli.models.resolve_model`` when the CLI provides it; without it,
``openai:NAME`` (with --base-url) and ``scripted`` are understood here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keye_agent.agent import Agent
from keye_agent.backends.scripted import ScriptedBackend
from keye_agent.search import make_fetch_url, make_web_search
from keye_agent.search.local import tokenize
from keye_agent.types import AssistantTurn, Message, RunResult, ToolCall

CORPUS = Path(__file__).with_name("corpus")
QUESTION = "When did Voyager 1 cross the heliopause, and how far from the Sun was it at the time?"
INSTRUCTIONS = (
    "You answer questions from a local document collection. Search it with web_search, read the most relevant "
    "documents with fetch_url, and answer only from what they say. End the answer with a 'Sources:' line listing "
    "the URLs you used. If the documents do not answer the question, say so."
)


def tools_for(corpus: Path) -> list[Any]:
    """web_search over the corpus, and fetch_url limited to its documents (no network)."""
    return [make_web_search(backend=f"local:{corpus}", max_results=4),
            make_fetch_url(corpus=corpus, offline=True, max_chars=6000)]


class ScriptedReader:
    """A fixed procedure standing in for a model: search the question, read the top hit, answer with the
    sentences of that document sharing most words with the question, and cite it. It shows the mechanics only."""

    def __init__(self, question: str) -> None:
        self.question = question
        self.terms = set(tokenize(question))
        self.url: str | None = None

    def __call__(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None) -> AssistantTurn:
        last = messages[-1]
        if last.role != "tool":
            return AssistantTurn(tool_calls=[ToolCall(id="call_search", name="web_search",
                                                      arguments={"query": self.question, "max_results": 3})])
        if last.name == "web_search":
            m = re.search(r"^URL: (\S+)", last.text, re.MULTILINE)
            if m is None:
                return AssistantTurn(tool_calls=[ToolCall(id="call_final", name="final_answer", arguments={
                    "answer": "The documents do not answer this question."})])
            self.url = m.group(1)
            return AssistantTurn(tool_calls=[ToolCall(id="call_fetch", name="fetch_url", arguments={"url": self.url})])
        body = last.text.split("\n\n", 1)[-1]
        prose = " ".join(line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#"))
        sentences = re.split(r"(?<=[.!?])\s+", " ".join(prose.split()))
        best = sorted(sentences, key=lambda s: -len(self.terms & set(tokenize(s))))[:2]
        answer = " ".join(s for s in sentences if s in best) + f"\n\nSources: {self.url}"
        return AssistantTurn(tool_calls=[ToolCall(id="call_final", name="final_answer", arguments={"answer": answer})])


def build_backend(spec: str, base_url: str | None, question: str) -> Any:
    if spec == "scripted":
        return ScriptedBackend([ScriptedReader(question)] * 6, name="scripted-reader")
    try:
        from keye_agent.cli.models import resolve_model  # the CLI's model resolver, when installed
    except ImportError:
        resolve_model = None
    if resolve_model is not None:
        return resolve_model(spec, base_url=base_url)
    if spec.startswith("openai:"):
        from keye_agent.backends.openai import OpenAIBackend

        if not base_url:
            raise SystemExit("--model openai:NAME needs --base-url (the OpenAI-compatible server's /v1 URL)")
        return OpenAIBackend(spec.split(":", 1)[1], base_url=base_url)
    raise SystemExit(f"--model {spec!r} needs keye_agent.cli.models (the CLI); use openai:NAME with --base-url, "
                     "or scripted")


def cited_urls(answer: str | None, corpus_urls: set[str]) -> list[str]:
    """The corpus URLs the answer mentions, in order."""
    found = re.findall(r"(?:https?|file)://[^\s)\]>,]+", answer or "")
    return [u.rstrip(".") for u in found if u.rstrip(".") in corpus_urls]


def run(model: Any, question: str = QUESTION, corpus: Path = CORPUS, *, max_steps: int = 8) -> RunResult:
    """Ask ``question`` of ``model`` with the corpus tools; returns the RunResult."""
    return Agent(model, tools_for(corpus), INSTRUCTIONS, max_steps=max_steps).run(question)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.search_offline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo", help="demo (default), openai:NAME with --base-url, scripted, or any "
                    "spec the CLI knows")
    ap.add_argument("--base-url", default=None, help="the model server's URL (OpenAI-compatible)")
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="folder of .md/.txt/.html/.pdf files")
    ap.add_argument("--question", default=QUESTION)
    ap.add_argument("--max-steps", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    model = build_backend(args.model, args.base_url, args.question)
    result = run(model, args.question, args.corpus, max_steps=args.max_steps)
    from keye_agent.search import LocalBackend

    corpus_urls = {d.url for d in LocalBackend(args.corpus).corpus.documents}
    calls = [(r.name, r.ok, r.error, c.arguments) for step in result.trajectory.steps if step.turn is not None
             for c, r in zip(step.turn.tool_calls, step.tool_results, strict=False)]
    cited = cited_urls(result.final_answer, corpus_urls)
    if args.json:
        print(json.dumps({"model": getattr(model, "name", args.model), "status": result.status,
                          "final_answer": result.final_answer, "cited_urls": cited, "steps": result.steps,
                          "tool_calls": [{"name": n, "ok": ok, "error": e, "arguments": a} for n, ok, e, a in calls]},
                         indent=2, ensure_ascii=False))
    else:
        print(f"model: {getattr(model, 'name', args.model)}  status: {result.status}  steps: {result.steps}")
        for name, ok, err, arguments in calls:
            print(f"  {'ok  ' if ok else 'FAIL'} {name} {json.dumps(arguments, ensure_ascii=False)}"
                  + (f": {err[:110]}" if err else ""))
        print("answer:", result.final_answer)
        print("cited corpus URLs:", ", ".join(cited) or "none")
    return 0 if result.ok and cited else 1


if __name__ == "__main__":
    sys.exit(main())
