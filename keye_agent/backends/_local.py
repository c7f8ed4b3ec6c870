"""What the local backends (Keye, transformers) share: one generation skeleton (render, encode, window check,
grammar, decode in a worker thread, stream, parse, turn) and one stop-string streamer.

A subclass supplies the model-specific parts: :meth:`LocalBackend.render`, :meth:`LocalBackend._encode`, the
grammar, a detokenizer, and :meth:`LocalBackend._decode`, which runs ``model.generate.decode_tokens`` over its own
step (a prefix cache, a transformers KV cache). Generation runs in a worker thread under the backend's lock (one
model, one generation at a time; :meth:`LocalBackend._serial`, unless the backend batches generations itself), so
the event loop stays free; a caller that stops listening cancels it at the next token.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from keye_agent.errors import ConfigError, ContextWindowError
from keye_agent.formats.hermes import HERMES, THINK_OPEN, StreamSplitter
from keye_agent.model.generate import DecodeResult, TokenMask
from keye_agent.model.sampling import SamplingParams
from keye_agent.types import AssistantTurn, GenerationSettings, Message, StreamChunk, Usage

from .base import StreamingBackend
from .parsing import parse_tool_calls

Post = Callable[[tuple[str, Any]], None]

_LIVE: dict[threading.Thread, threading.Event] = {}
"""Generation workers still running, with their cancel flags (a caller cancelled or timed out in a prefill leaves
its worker running until the next token)."""
_LIVE_LOCK = threading.Lock()
_AT_EXIT: list[bool] = []


def _track(worker: threading.Thread, cancel: threading.Event) -> None:
    with _LIVE_LOCK:
        _LIVE[worker] = cancel
        if not _AT_EXIT:  # registered at the first generation, after torch's own handlers, so it runs before them
            atexit.register(_stop_live_workers)
            _AT_EXIT.append(True)


def _stop_live_workers(timeout_s: float = 60.0) -> None:
    """At exit, stop the generations still running and wait for them: a daemon thread left inside a torch op when
    the interpreter ends aborts the process ("terminate called without an active exception", exit 134), so a tau
    run whose simulation timed out, or a script that cancelled a generation, would end in a crash."""
    with _LIVE_LOCK:
        live = list(_LIVE.items())
    for _, cancel in live:
        cancel.set()
    deadline = time.monotonic() + timeout_s
    for worker, _ in live:
        worker.join(max(0.0, deadline - time.monotonic()))


class Detokenizer(Protocol):
    """Token ids in, text deltas out, multi-byte characters kept whole (``model.tokenizer.IncrementalDecoder``)."""

    def feed(self, token_id: int) -> str: ...

    def flush(self) -> str: ...


class TextStream:
    """Token ids to streamed text: multi-byte characters kept whole, stop strings cut (a tail that may still become
    one is held back, so no piece of a stop string is ever streamed), tool-call text hidden (it reaches the caller
    as parsed calls), reasoning and text told apart. Work per token is proportional to its text plus the longest
    stop string: linear in the answer's length."""

    def __init__(self, detok: Detokenizer, stops: Sequence[str], post: Post, *, in_reasoning: bool = False) -> None:
        self._detok = detok
        self._stops = [s for s in stops if s]
        self._post = post
        self._splitter = StreamSplitter(in_reasoning=in_reasoning)
        self._pieces: list[str] = []
        self._held = ""  # accepted text that may be the start of a stop string
        self.stopped = False
        """A stop string was reached (generation should end)."""

    def feed(self, token_id: int) -> bool:
        """Take one id; False once a stop string has been reached."""
        return self._add(self._detok.feed(token_id))

    def _add(self, delta: str) -> bool:
        if self.stopped:
            return False
        if not delta:
            return True
        buf = self._held + delta
        hits = [at for at in (buf.find(s) for s in self._stops) if at >= 0]
        if hits:
            self._emit(buf[: min(hits)])
            self._held, self.stopped = "", True
            return False
        keep = max((k for s in self._stops for k in range(1, len(s)) if buf.endswith(s[:k])), default=0)
        self._emit(buf[: len(buf) - keep])
        self._held = buf[len(buf) - keep :]
        return True

    def _emit(self, text: str) -> None:
        if text:
            self._pieces.append(text)
            for kind, piece in self._splitter.feed(text):
                self._post((kind, piece))

    def finish(self) -> str:
        """Flush what was held back; the whole raw text (up to a stop string)."""
        self._add(self._detok.flush())
        if not self.stopped:
            self._emit(self._held)
            self._held = ""
        for kind, piece in self._splitter.flush():
            self._post((kind, piece))
        return "".join(self._pieces)


@dataclass
class Job:
    """One generation request, as the skeleton hands it to :meth:`LocalBackend._decode`."""

    prompt: str
    prompt_ids: list[int]
    offered: list[dict[str, Any]]
    settings: GenerationSettings
    sampling: SamplingParams
    max_new: int
    extra: Any = None
    """What :meth:`LocalBackend._inputs` returned (the Keye backend's fetched media)."""
    notes: list[str] = field(default_factory=list)
    """Notes for the turn (what the backend changed about the input, e.g. a video sampled at fewer frames)."""


def sampling_params(settings: GenerationSettings) -> SamplingParams:
    """The sampler's parameters of generation settings; bad values are a :class:`ConfigError`."""
    try:
        return SamplingParams(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
                              repetition_penalty=settings.repetition_penalty, seed=settings.seed)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"generation settings: {e}") from None


class LocalBackend(StreamingBackend):
    """Base class of the backends that run a model in this process. See the module docstring."""

    call_format = HERMES
    """The tool-call format the model writes (the agent loop words its corrections by it)."""
    constrained: bool = True
    parallel_tool_calls: bool = True
    stop_ids: list[int]

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # ---- what a subclass supplies --------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
               settings: GenerationSettings | None = None) -> str:
        raise NotImplementedError

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    @property
    def grammar(self) -> Any:
        """The :class:`~keye_agent.backends.constrained.ToolCallGrammar` of the tokenizer."""
        raise NotImplementedError

    def _detokenizer(self) -> Detokenizer:
        raise NotImplementedError

    def _decode(self, job: Job, mask: TokenMask | None, cancel: threading.Event,
                on_token: Callable[[int], bool]) -> DecodeResult:
        """Generate ``job.max_new`` ids at most (called in the worker thread, under :meth:`_serial`)."""
        raise NotImplementedError

    async def _inputs(self, messages: Sequence[Message]) -> Any:
        """Anything to fetch before generation (awaited on the caller's loop); goes to ``Job.extra``."""
        return None

    def _allow_reasoning(self, settings: GenerationSettings) -> bool:
        """Whether a constrained turn may open with a ``<think>`` block."""
        return bool(settings.enable_thinking)

    def _stop_strings(self, settings: GenerationSettings) -> list[str]:
        return list(settings.stop)

    # ---- the skeleton --------------------------------------------------------------------------------------

    async def astream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AsyncIterator[StreamChunk]:
        offered = list(tools or []) if settings.tool_choice != "none" else []
        prompt = self.render(messages, offered or None, settings)
        prompt_ids = self._encode(prompt)
        extra = await self._inputs(messages)
        self._check_window(len(prompt_ids))
        job = Job(prompt, prompt_ids, offered, settings, sampling_params(settings),
                  max_new=min(settings.max_tokens, self.context_window - len(prompt_ids)), extra=extra)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def post(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody listens any more
                cancel.set()

        worker = threading.Thread(target=self._work, name=f"{type(self).__name__}-generate", daemon=True,
                                  args=(job, post, cancel))
        _track(worker, cancel)
        worker.start()
        try:
            while True:
                kind, payload = await queue.get()
                if kind == "error":
                    raise payload
                if kind == "done":
                    yield StreamChunk("done", turn=payload)
                    return
                yield StreamChunk(kind, payload)  # type: ignore[arg-type]
        finally:
            cancel.set()  # a caller that stops listening (or is cancelled) stops the worker at its next token

    def _check_window(self, n_prompt: int, what: str = "the prompt") -> None:
        if n_prompt >= self.context_window:
            raise ContextWindowError(f"{self.name}: {what} has {n_prompt} tokens; the context window is "
                                     f"{self.context_window}")

    def _serial(self, job: Job) -> AbstractContextManager[Any]:
        """What a generation holds while it runs: the backend's lock (one generation at a time). A backend whose
        engine batches concurrent generations itself returns a null context for the jobs it batches."""
        return self._lock

    def _work(self, job: Job, post: Post, cancel: threading.Event) -> None:
        import torch

        try:
            with self._serial(job), torch.inference_mode():
                if cancel.is_set():
                    return
                turn = self._generate(job, post, cancel)
            post(("done", turn))
        except BaseException as e:  # relayed whole (traceback included) to the awaiting caller, which raises it
            post(("error", e))
        finally:
            with _LIVE_LOCK:
                _LIVE.pop(threading.current_thread(), None)

    def _generate(self, job: Job, post: Post, cancel: threading.Event) -> AssistantTurn:
        mask = None
        if self.constrained and job.offered:
            mask = self.grammar.decoder(job.offered, job.settings.tool_choice,
                                        allow_reasoning=self._allow_reasoning(job.settings),
                                        parallel=self.parallel_tool_calls)
        text = TextStream(self._detokenizer(), self._stop_strings(job.settings), post,
                          in_reasoning=job.prompt.rstrip().endswith(THINK_OPEN))
        result = self._decode(job, mask, cancel, text.feed)
        raw = text.finish()
        if text.stopped:
            result.finish_reason = "stop"
        parsed = parse_tool_calls(raw, allow_untagged=bool(job.offered))
        finish = "tool_calls" if parsed.tool_calls else result.finish_reason
        return AssistantTurn(
            text=parsed.text, reasoning=parsed.reasoning, tool_calls=list(parsed.tool_calls),
            parse_errors=list(parsed.errors), raw=raw, finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=result.prompt_tokens or len(job.prompt_ids),
                        completion_tokens=len(result.token_ids)),
            notes=job.notes,
        )
