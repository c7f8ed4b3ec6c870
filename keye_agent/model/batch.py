"""Continuous batching: many generations share each forward pass of one model, over one paged cache.

    engine = BatchEngine(model, max_batch=8)
    result = engine.generate(prompt_ids, max_new=64, stop_ids=[2])        # blocking; call it from many threads
    gen = engine.submit(prompt_ids, 64); result = gen.result(on_token=print)

A scheduler thread (started on the first request) loops: drop the sequences whose caller cancelled or stopped
listening (their pages are freed at once), admit waiting requests into the running batch (up to ``max_batch``, in
arrival order, as long as the pool holds their pages), run one forward over every running sequence (a prefill
chunk of each new one, one token of each decoding one: ``paged_forward``), then mask, sample and check stops per
sequence with its own settings. A new request therefore joins at the next step, never waiting for the batch to end.

Pages: a request is admitted when the pool holds the pages of its prompt (and of its first answer token), minus
the full pages of its prompt that the pool already holds (prefix caching: ``PagePool.match``;
``DecodeResult.reused_tokens`` counts them), with a page to spare for each running sequence. A request whose next
prompt page a running sequence is computing right now waits for it (later requests may pass it meanwhile), so
siblings that arrive together with one system prompt prefill it once. Sequences take a new
page as they grow; when none is free, the most recently admitted sequence is preempted: its pages are released
(their full pages stay cached) and it goes back to the head of the queue with the tokens it has, to be prefilled
again (mostly from the cache) and continue exactly where it stopped. A request that could never fit (more tokens
than ``max_seq_len``, or a prompt larger than the whole pool) raises :class:`~keye_agent.errors.ContextWindowError`
at submission; a sequence that outgrows the whole pool alone ends with one.

Decode steps (every running sequence at one token) on CUDA replay a captured graph per bucket of batch size and
block-table width (``batch_graph``); elsewhere they run eagerly. Each generation computes what
``model.generate.decode_tokens`` computes for it alone: the same masking, sampling, stop and length rules.

The engine serves text prompts (positions are token indices) in the model's current attention mode; a sequence
whose mode changes under it (``set_sparse``) ends with an error.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import torch

from keye_agent.errors import ContextWindowError
from keye_agent.model.batch_graph import BatchDecodeGraph, bucket
from keye_agent.model.batch_request import EngineStats, Generation, SeqState, mask_rows
from keye_agent.model.generate import DecodeResult, TokenMask
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.paged import PagePool, chain_keys
from keye_agent.model.paged_forward import Segment, forward_packed
from keye_agent.model.sampling import SamplingParams

__all__ = ["BatchEngine", "EngineStats", "Generation"]

_DEFAULT_SEQ = 16384  # default per-sequence bound of the pool size (max_batch of these), in tokens


_ENGINES: weakref.WeakSet[BatchEngine] = weakref.WeakSet()
_EXIT_HOOK: list[bool] = []


def _close_at_exit(engine: BatchEngine) -> None:
    """Close the engines still serving when the interpreter exits: a daemon thread caught inside a torch op at
    exit aborts the process ("terminate called without an active exception")."""
    _ENGINES.add(engine)
    if not _EXIT_HOOK:
        atexit.register(lambda: [e.close() for e in list(_ENGINES)])
        _EXIT_HOOK.append(True)


class BatchEngine:
    """Continuous batching of ``model`` (module docstring).

    ``max_batch``: running sequences at most. ``page_size``: tokens per page. ``cache_tokens``: tokens the pool
    holds (default ``max_batch * min(max_seq_len, 16384)``). ``max_seq_len``: prompt + answer at most (default the
    model's ``max_position_embeddings``). ``prefill_chunk``: prompt tokens run per step at most (a long prompt is
    prefilled over several steps, so decoding sequences keep their pace). ``valid_vocab``: ids at or past it are
    never sampled. ``prefix_cache``: reuse full pages across requests (default on). ``decode_graph``: decode steps
    through ``BatchDecodeGraph`` (default: on CUDA; True elsewhere runs the same fixed-shape step eagerly).
    ``batched_decode``: in mixed steps, attend the decode rows as one padded batch (default on; off attends each
    sequence alone with the sequential path's very ops). ``start=False``: no scheduler thread; the
    caller drives :meth:`step` (tests).
    """

    def __init__(self, model: KeyeForCausalLM, *, max_batch: int = 8, page_size: int = 32,
                 cache_tokens: int | None = None, max_seq_len: int | None = None, prefill_chunk: int = 2048,
                 valid_vocab: int | None = None, prefix_cache: bool = True, decode_graph: bool | None = None,
                 batched_decode: bool | None = None, start: bool = True) -> None:
        cfg = model.config
        if max_batch < 1 or page_size < 1 or prefill_chunk < 1:
            raise ValueError(f"BatchEngine: max_batch, page_size and prefill_chunk must be >= 1, got {max_batch}, "
                             f"{page_size} and {prefill_chunk}")
        self.model = model
        w = model.model.embed_tokens.weight
        self.device = w.device
        self.max_batch, self.page_size, self.prefill_chunk = max_batch, page_size, prefill_chunk
        self.max_seq_len = min(max_seq_len or cfg.max_position_embeddings, cfg.max_position_embeddings)
        tokens = cache_tokens or max_batch * min(self.max_seq_len, _DEFAULT_SEQ)
        self.pool = PagePool(cfg, -(-tokens // page_size), page_size, device=w.device, dtype=w.dtype)
        self.valid_vocab = valid_vocab
        self.prefix_cache = prefix_cache
        cuda = self.device.type == "cuda"
        self.decode_graph = cuda if decode_graph is None else decode_graph
        self.batched_decode = True if batched_decode is None else batched_decode
        self._graph_pool = torch.cuda.graph_pool_handle() if cuda and self.decode_graph else None
        self.stats = EngineStats()
        self._graphs: dict[tuple[int, int, bool], BatchDecodeGraph] = {}
        self._waiting: deque[Generation] = deque()
        self._preempted: deque[SeqState] = deque()  # resumed before any new request
        self._inflight: dict[bytes, SeqState] = {}  # prefix key of a prompt page being computed -> its sequence
        self._running: list[SeqState] = []
        self._cv = threading.Condition()
        self._closed = False
        self._auto = start
        self._thread: threading.Thread | None = None
        self._step_lock = threading.Lock()

    # ---- the caller's side (any thread) -----------------------------------------------------------------------

    def submit(self, prompt_ids: Sequence[int], max_new: int, sampling: SamplingParams | None = None,
               stop_ids: Iterable[int] = (), *, mask: TokenMask | None = None,
               generator: torch.Generator | None = None, cancel: threading.Event | None = None,
               reuse: bool = True) -> Generation:
        """Queue a generation of up to ``max_new`` ids after ``prompt_ids`` (it joins the batch at the next step)."""
        prompt = [int(t) for t in prompt_ids]
        vocab = self.model.config.vocab_size
        if not prompt or min(prompt) < 0 or max(prompt) >= vocab:
            raise ValueError(f"BatchEngine: prompt_ids must be non-empty ids in 0..{vocab - 1}")
        if max_new < 0:
            raise ValueError(f"BatchEngine: max_new must be >= 0, got {max_new}")
        total = len(prompt) + max(max_new, 1) - 1
        if total > self.max_seq_len or self._pages_for(len(prompt) + 1) > self.pool.num_pages:
            raise ContextWindowError(
                f"BatchEngine: a prompt of {len(prompt)} tokens plus {max_new} new ones needs {total} cached tokens; "
                f"the engine holds {self.max_seq_len} per sequence and {self.pool.num_pages * self.page_size} in all",
                hint="shorten the prompt or max_tokens, or raise cache_tokens / max_seq_len")
        gen = Generation(prompt, max_new, sampling or SamplingParams(), frozenset(stop_ids), mask, generator,
                         cancel, reuse)
        if max_new == 0:
            gen._send("end", "length")
            gen.done = True
            return gen
        with self._cv:
            if self._closed:
                raise RuntimeError("BatchEngine: closed")
            self._waiting.append(gen)
            if self._auto and self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="keye-batch-engine", daemon=True)
                _close_at_exit(self)
                self._thread.start()
            self._cv.notify()
        return gen

    def generate(self, prompt_ids: Sequence[int], max_new: int, sampling: SamplingParams | None = None,
                 stop_ids: Iterable[int] = (), *, mask: TokenMask | None = None,
                 generator: torch.Generator | None = None, cancel: threading.Event | None = None,
                 on_token: Callable[[int], bool] | None = None, reuse: bool = True) -> DecodeResult:
        """:meth:`submit` and wait: the blocking call each of many threads can make at once. ``on_token`` sees each
        id and returns False to end generation there ("stop"); ``cancel`` ends it as "cancelled"."""
        gen = self.submit(prompt_ids, max_new, sampling, stop_ids, mask=mask, generator=generator, cancel=cancel,
                          reuse=reuse)
        return gen.result(on_token)

    @property
    def waiting(self) -> int:
        """Requests queued, not yet admitted (preempted ones included)."""
        return len(self._waiting) + len(self._preempted)

    @property
    def running(self) -> int:
        return len(self._running)

    def exclusive(self) -> threading.Lock:
        """A lock the scheduler holds around each step: hold it to run the model outside the engine meanwhile
        (the batch pauses; e.g. a prompt with images, or a CUDA graph captured on another thread)."""
        return self._step_lock

    def clear_prefix_cache(self) -> None:
        """Forget the cached prefixes no running sequence holds (next prompts prefill whole)."""
        with self._cv:
            self.pool.clear_prefixes()

    def close(self) -> None:
        """Stop the scheduler; queued and running generations end with an error."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._fail_all(RuntimeError("BatchEngine: closed"), waiting=True)

    # ---- the scheduler ----------------------------------------------------------------------------------------

    def _serve(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._closed and not self._waiting and not self._running:
                        self._cv.wait()
                    if self._closed:
                        return
                try:
                    with self._step_lock:
                        self.step()
                except Exception as e:  # a failed forward: every sequence of the step gets the error, whole
                    self._fail_all(e)

    def _fail_all(self, error: BaseException, waiting: bool = False) -> None:
        """End every running generation (and with ``waiting`` every queued one) with ``error``."""
        with self._cv:
            gens = [s.gen for s in self._running]
            if waiting:
                gens += [s.gen for s in self._preempted] + list(self._waiting)
                self._waiting.clear()
                self._preempted.clear()
            for s in self._running:
                self._untrack(s)
                self.pool.release(s.pages)
            self._running = []
        for g in gens:
            g._send("error", error)
            g.done = True

    def _pages_for(self, tokens: int) -> int:
        return max(1, -(-tokens // self.page_size))

    def _finish(self, seq: SeqState, *event: object) -> None:
        self._running.remove(seq)
        self._untrack(seq)
        with self._cv:
            self.pool.release(seq.pages)
        seq.gen._send(*event)
        seq.gen.done = True

    def _admit(self) -> None:
        sparse = self.model.sparse and self.model.config.sa_config is not None
        with self._cv:
            for q in (self._preempted, self._waiting):
                for item in [x for x in q if (x.gen if isinstance(x, SeqState) else x).abandoned]:
                    q.remove(item)  # type: ignore[arg-type]
                    gen = item.gen if isinstance(item, SeqState) else item
                    gen._send("end", "cancelled")
                    gen.done = True
            for head in [*self._preempted, *self._waiting]:
                if len(self._running) >= self.max_batch:
                    return
                gen = head.gen if isinstance(head, SeqState) else head
                ids = head.ids if isinstance(head, SeqState) else gen.prompt
                matched, key = [], None
                limit = (len(ids) - 1) // self.page_size  # at least the last token must run, to give the next logits
                if gen.reuse and self.prefix_cache:
                    matched, key = self.pool.match(ids, sparse, limit)
                    if len(matched) < limit and self._inflight:
                        nxt = next(chain_keys(ids, self.page_size, sparse, len(matched) + 1, key, len(matched)))
                        if nxt in self._inflight:  # a running sequence is computing that very page: take it after
                            self.pool.release(matched)
                            continue
                need = self._pages_for(len(ids) + 1) - len(matched)
                if need + len(self._running) > self.pool.available:  # a page to spare for each running sequence
                    self.pool.release(matched)
                    return  # the head waits for pages (arrival order is kept)
                if isinstance(head, SeqState):
                    self._preempted.remove(head)
                else:
                    self._waiting.remove(head)
                seq = head if isinstance(head, SeqState) else SeqState(gen, self.page_size, self.device, sparse)
                seq.place(matched + self.pool.allocate(need), key, len(matched) * self.page_size)
                self._running.append(seq)
                if self.prefix_cache:
                    seq.inflight = list(chain_keys(seq.ids, self.page_size, sparse, None, key, seq.n_registered))
                    for k in seq.inflight:
                        self._inflight.setdefault(k, seq)
                if not isinstance(head, SeqState):
                    self.stats.reused += seq.n_cached
                    gen._send("start", seq.n_cached)

    def _untrack(self, seq: SeqState) -> None:
        for k in seq.inflight:
            if self._inflight.get(k) is seq:
                del self._inflight[k]
        seq.inflight = []

    def _make_room(self, run: list[tuple[SeqState, int]]) -> list[tuple[SeqState, int]]:
        """Give each sequence of ``run`` the pages its new tokens need, preempting the most recently admitted
        sequences while the pool lacks them; the run without the preempted."""
        for seq, n in run:
            while seq in self._running:
                want = self._pages_for(seq.n_cached + n) - len(seq.pages)
                if want <= 0:
                    break
                with self._cv:
                    if want <= self.pool.available:
                        seq.grow(self.pool.allocate(want))
                        break
                if len(self._running) == 1:
                    self._finish(seq, "error", ContextWindowError(
                        f"BatchEngine: a sequence of {seq.n_cached + n} tokens outgrew the whole page pool "
                        f"({self.pool.num_pages * self.page_size} tokens)", hint="raise cache_tokens"))
                    break
                self._preempt(self._running[-1])
        return [(seq, n) for seq, n in run if seq in self._running]

    def _preempt(self, seq: SeqState) -> None:
        self._running.remove(seq)
        self._untrack(seq)
        with self._cv:
            self.pool.release(seq.pages)
            seq.place([], None, 0)
            self._preempted.appendleft(seq)
        self.stats.preemptions += 1

    def step(self) -> int:
        """One scheduling round: drop abandoned sequences, admit waiting ones, run one forward over all, sample.
        Returns how many sequences ran. The scheduler thread calls it; with ``start=False`` the caller does."""
        for seq in [s for s in self._running if s.gen.abandoned]:
            self._finish(seq, "end", "stop" if seq.gen._stop.is_set() else "cancelled")
        self._admit()
        sparse = self.model.sparse and self.model.config.sa_config is not None
        for seq in [s for s in self._running if s.sparse != sparse]:
            self._finish(seq, "error", ValueError("BatchEngine: the model's attention mode (set_sparse) changed "
                                                  "during this generation"))
        if not self._running:
            return 0
        t0 = time.perf_counter()
        run: list[tuple[SeqState, int]] = []
        budget = self.prefill_chunk
        for seq in self._running:
            pending = len(seq.ids) - seq.n_cached
            n = 1 if pending == 1 else min(pending, budget)
            if n < 1:
                continue
            if pending > 1:
                budget -= n
            run.append((seq, n))
        run = self._make_room(run)
        if not run:
            return 0
        logits = self._forward(run, sparse)
        dt = time.perf_counter() - t0
        st = self.stats
        st.steps += 1
        st.max_running = max(st.max_running, len(run))
        st.batch_sizes[len(run)] = st.batch_sizes.get(len(run), 0) + 1
        ready = []
        for j, (seq, n) in enumerate(run):
            if seq.n_sampled == 0:
                st.prefilled += n
            seq.n_cached += n
            self._register(seq)
            if seq.n_cached == len(seq.ids):
                ready.append((seq, j))
        self._sample(ready, logits, dt)
        return len(run)

    def _forward(self, run: list[tuple[SeqState, int]], sparse: bool) -> torch.Tensor:
        if self.decode_graph and all(n == 1 for _, n in run):
            self.stats.decode_steps += 1
            width = max(self._pages_for(seq.n_cached + 1) for seq, _ in run)
            g = self._graph(len(run), width, sparse)
            self.stats.graph_steps += g.graph is not None
            return g([seq.ids[-1] for seq, _ in run], [seq.page_cpu[: self._pages_for(seq.n_cached + 1)]
                                                        for seq, _ in run], [seq.n_cached for seq, _ in run])
        if all(n == 1 for _, n in run):
            self.stats.decode_steps += 1
        ids = [t for seq, n in run for t in seq.ids[seq.n_cached: seq.n_cached + n]]
        tokens = torch.tensor(ids, dtype=torch.long, device=self.device)
        segments = [Segment(seq.n_cached, n, seq.slots[: seq.n_cached + n]) for seq, n in run]
        return forward_packed(self.model, self.pool, tokens, segments, sparse, self.batched_decode)

    def _graph(self, n: int, width: int, sparse: bool) -> BatchDecodeGraph:
        # Block tables round up to a power of two up to 64 pages, then to a multiple of 64: fewer captures for long
        # sequences, at most 64 pages of padding gathered per row.
        pages = bucket(width, 4) if width <= 64 else -(-width // 64) * 64
        key = (bucket(n), pages, sparse)
        g = self._graphs.get(key)
        if g is None:
            g = self._graphs[key] = BatchDecodeGraph(self.model, self.pool, key[0], key[1], sparse,
                                                     mempool=self._graph_pool)
        return g

    def _register(self, seq: SeqState) -> None:
        full = seq.n_cached // self.page_size
        if not self.prefix_cache or full <= seq.n_registered:
            return
        with self._cv:
            for key in chain_keys(seq.ids, self.page_size, seq.sparse, full, seq.key, seq.n_registered):
                self.pool.register(seq.pages[seq.n_registered], key)
                if self._inflight.get(key) is seq:
                    del self._inflight[key]
                seq.key = key
                seq.n_registered += 1

    def _sample(self, ready: list[tuple[SeqState, int]], logits: torch.Tensor, dt: float) -> None:
        if not ready:
            return
        if self.valid_vocab is not None and logits.shape[-1] > self.valid_vocab:
            logits[:, self.valid_vocab:] = float("-inf")
        failed = mask_rows(ready, logits)
        plain = [j for seq, j in ready if (seq.gen.mask is None or hasattr(seq.gen.mask, "mask_rows"))
                 and seq.gen.sampling.greedy and seq.gen.sampling.repetition_penalty == 1.0]
        greedy = dict(zip(plain, logits[plain].argmax(-1).tolist(), strict=True)) if plain else {}
        now = time.perf_counter()
        for seq, j in ready:
            gen = seq.gen
            if seq in failed:
                self._finish(seq, "error", failed[seq])
                continue
            try:
                tok = greedy.get(j)
                if tok is None:
                    tok = seq.pick(logits[j])
                if gen.mask is not None:
                    gen.mask.accept(tok)
            except Exception as e:  # this sequence's grammar or sampler failed: it alone ends
                self._finish(seq, "error", e)
                continue
            seq.n_sampled += 1
            self.stats.tokens += 1
            if tok in gen.stop_ids:
                gen._send("token", tok, dt, now, True)
                self._finish(seq, "end", "stop")
                continue
            seq.ids.append(tok)
            if seq.context is not None:
                seq.context[0, len(gen.prompt) + seq.n_sampled - 1] = tok
            gen._send("token", tok, dt, now, False)
            if gen.mask is not None and gen.mask.terminated:
                self._finish(seq, "end", "stop")
            elif seq.n_sampled >= gen.max_new:
                self._finish(seq, "end", "length")
