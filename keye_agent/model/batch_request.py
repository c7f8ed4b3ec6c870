"""What the batch engine (``model.batch``) keeps per request: the caller's handle (:class:`Generation`, whose
:meth:`Generation.result` turns the scheduler's events into a ``DecodeResult``), the scheduler's per-sequence state
(its ids, pages and slots), and the engine's counters (:class:`EngineStats`)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from keye_agent.model.generate import DecodeResult, TokenMask
from keye_agent.model.paged_forward import page_slots
from keye_agent.model.sampling import SamplingParams, sample_next

__all__ = ["EngineStats", "Generation", "SeqState", "mask_rows"]


@dataclass
class EngineStats:
    """What the engine did so far (read it between requests; the scheduler updates it)."""

    steps: int = 0
    decode_steps: int = 0
    """Steps in which every running sequence decoded one token (the captured step on CUDA)."""
    graph_steps: int = 0
    tokens: int = 0
    """Tokens sampled (stop tokens included)."""
    prefilled: int = 0
    reused: int = 0
    max_running: int = 0
    preemptions: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    """Running sequences per step -> steps."""


class Generation:
    """One submitted request: :meth:`result` waits for it (streaming its ids to ``on_token``); :meth:`cancel` ends
    it at the next step and frees its pages."""

    def __init__(self, prompt: list[int], max_new: int, sampling: SamplingParams, stop_ids: frozenset[int],
                 mask: TokenMask | None, generator: torch.Generator | None, cancel: threading.Event | None,
                 reuse: bool) -> None:
        self.prompt, self.max_new, self.sampling, self.stop_ids = prompt, max_new, sampling, stop_ids
        self.mask, self.generator, self.reuse = mask, generator, reuse
        self._cancel = cancel or threading.Event()
        self._stop = threading.Event()
        self._events: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self.submitted = time.perf_counter()
        self.done = False
        """The scheduler has sent its last event (its pages are free)."""

    def cancel(self) -> None:
        """End it at the next step ("cancelled")."""
        self._cancel.set()

    @property
    def abandoned(self) -> bool:
        return self._cancel.is_set() or self._stop.is_set()

    def _send(self, *event: object) -> None:
        self._events.put(event)

    def result(self, on_token: Callable[[int], bool] | None = None, timeout: float | None = None) -> DecodeResult:
        """Wait for the generation; ``on_token`` sees each id (stop ids excluded) and returns False to end it there
        ("stop"). ``timeout``: seconds to wait for each event (``queue.Empty`` past it)."""
        out = DecodeResult(prompt_tokens=len(self.prompt))
        try:
            while True:
                kind, *rest = self._events.get(timeout=timeout)
                if kind == "start":
                    out.reused_tokens = rest[0]
                elif kind == "token":
                    tok, dt, at, is_stop = rest
                    if not out.step_times:
                        out.prefill_s = at - self.submitted
                    out.step_times.append(dt)
                    if is_stop:
                        out.stop_token_id = tok
                        continue
                    out.token_ids.append(tok)
                    if on_token is not None and on_token(tok) is False:
                        self._stop.set()
                        out.finish_reason = "stop"
                        return out
                elif kind == "end":
                    out.finish_reason = rest[0]
                    return out
                else:
                    raise rest[0]
        finally:
            out.decode_s = max(0.0, time.perf_counter() - self.submitted - out.prefill_s)


class SeqState:
    """A running (or preempted) sequence (scheduler thread only)."""

    def __init__(self, gen: Generation, page_size: int, device: torch.device, sparse: bool) -> None:
        self.gen, self.page_size, self.device, self.sparse = gen, page_size, device, sparse
        self.ids = list(gen.prompt)
        self.n_sampled = 0
        self.context: torch.Tensor | None = None  # prompt + generated ids, for the repetition penalty
        self.inflight: list[bytes] = []  # prefix keys of its prompt pages not computed yet
        self.place([], None, 0)

    def place(self, pages: list[int], key: bytes | None, n_reused: int) -> None:
        """Hold ``pages`` (the first n_reused // page_size of them cached, ``key`` the last one's prefix key)."""
        self.pages, self.key = pages, key
        self.n_cached = n_reused
        self.n_registered = n_reused // self.page_size
        self.page_cpu = torch.tensor(pages, dtype=torch.long)
        self.slots = page_slots(self.page_cpu.to(self.device), self.page_size)

    def grow(self, pages: list[int]) -> None:
        self.pages = self.pages + pages
        new = torch.tensor(pages, dtype=torch.long)
        self.page_cpu = torch.cat([self.page_cpu, new])
        self.slots = torch.cat([self.slots, page_slots(new.to(self.device), self.page_size)])

    def pick(self, row: torch.Tensor) -> int:
        """Mask (unless batched), penalise and sample this sequence's next id from its logits row [V]."""
        seq, gen = self, self.gen
        if gen.mask is not None and not hasattr(gen.mask, "mask_rows"):
            gen.mask.mask(row)
        seen = None
        if gen.sampling.repetition_penalty != 1.0:
            n_prompt = len(gen.prompt)
            if seq.context is None:
                seq.context = torch.empty(1, n_prompt + gen.max_new, dtype=torch.long, device=row.device)
                seq.context[0, :n_prompt] = torch.tensor(gen.prompt, dtype=torch.long)
            seen = seq.context[:, : n_prompt + seq.n_sampled]
        return int(sample_next(row.view(1, -1), gen.sampling, seen, gen.generator).item())


def mask_rows(ready: list[tuple[SeqState, int]], logits: torch.Tensor) -> dict[SeqState, Exception]:
    """Mask in one call per class the rows whose masks offer ``mask_rows``; the sequences whose masks failed."""
    groups: dict[type, list[tuple[SeqState, int]]] = {}
    for seq, j in ready:
        m = seq.gen.mask
        if m is not None and hasattr(m, "mask_rows"):
            groups.setdefault(type(m), []).append((seq, j))
    failed: dict[SeqState, Exception] = {}
    for cls, rows in groups.items():
        idx = [j for _, j in rows]
        sub = logits[idx]
        try:
            cls.mask_rows([seq.gen.mask for seq, _ in rows], sub)  # type: ignore[attr-defined]
        except Exception as e:  # those grammars failed: their sequences alone end
            failed.update((seq, e) for seq, _ in rows)
            continue
        logits[idx] = sub
    return failed
