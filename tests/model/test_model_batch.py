"""Continuous batching (model.batch.BatchEngine over model.paged.PagePool) against the one-at-a-time path.

The tiny preset with fp32 random weights on the CPU; DSA with a top-k small enough that selections drop keys, and
dense. Greedy outputs of a batch (prompts of different lengths, some sharing a prefix, joining at different steps)
must equal ``model.generate.generate`` run on each request alone, token for token. Engines built with
``start=False`` are driven step by step by the test (joins at exact steps); one test uses the scheduler thread with
many caller threads.
"""

from __future__ import annotations

import threading

import pytest
import torch

from keye_agent.errors import ContextWindowError
from keye_agent.model.batch import BatchEngine
from keye_agent.model.generate import generate
from keye_agent.model.sampling import SamplingParams

MODES = [dict(batched_decode=False), dict(), dict(decode_graph=True)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _prompts(seed: int, vocab: int, system: int = 40, tails=(3, 10, 25)) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    shared = torch.randint(0, vocab, (system,), generator=g).tolist()
    out = [shared + torch.randint(0, vocab, (n,), generator=g).tolist() for n in tails]
    return out + [torch.randint(0, vocab, (7,), generator=g).tolist()]


def _sequential(model, prompts, n, **kw) -> list[list[int]]:
    with torch.inference_mode():
        return [generate(model, p, n, stop_token_ids=[], **kw).token_ids for p in prompts]


def _drain(engine: BatchEngine) -> None:
    with torch.inference_mode():
        while engine.running or engine.waiting:
            engine.step()


@pytest.mark.parametrize("mode", MODES, ids=["per-sequence", "batched-decode", "decode-graph-eager"])
@pytest.mark.parametrize("sparse,topk", [(False, 2048), (True, 5)], ids=["dense", "dsa"])
def test_batch_equals_sequential_greedy(make_tiny, sparse, topk, mode):
    model = make_tiny(seed=3, sa_config={"topk": topk})
    model.set_sparse(sparse)
    prompts = _prompts(0, model.config.vocab_size)
    want = _sequential(model, prompts, 12)
    engine = BatchEngine(model, max_batch=4, page_size=8, prefill_chunk=16, start=False, **mode)
    gens = [engine.submit(p, 12) for p in prompts[:2]]
    with torch.inference_mode():
        for _ in range(3):  # the first prompt prefills over 3 steps (chunk 16), the second waits for budget
            engine.step()
    gens += [engine.submit(p, 12) for p in prompts[2:]]  # join a running batch
    _drain(engine)
    results = [g.result() for g in gens]
    assert [r.token_ids for r in results] == want
    assert all(r.finish_reason == "length" for r in results)
    assert engine.stats.max_running == 4 and engine.stats.decode_steps > 0
    # the third prompt shares 40 tokens (5 full pages) with the first, whose pages were registered by then
    assert results[2].reused_tokens == 40 and results[0].reused_tokens == 0
    # the second, submitted with the first, waited for the first to compute the shared pages instead of prefilling
    assert results[1].reused_tokens == 40
    assert engine.pool.used == 0  # every page is released; the full ones stay cached


@pytest.mark.parametrize("sparse", [False, True])
def test_prefix_hit_reuses_pages_and_gives_the_same_tokens(make_tiny, sparse):
    model = make_tiny(seed=5, sa_config={"topk": 6})
    model.set_sparse(sparse)
    prompts = _prompts(1, model.config.vocab_size, system=33, tails=(5, 9))
    want = _sequential(model, prompts[:2], 10)
    engine = BatchEngine(model, max_batch=2, page_size=8, start=False)
    first = engine.submit(prompts[0], 10)
    _drain(engine)
    cached = engine.pool.cached
    assert cached == (33 + 5 + 10 - 1) // 8  # the full pages of the first sequence, prompt and answer
    second = engine.submit(prompts[1], 10)
    with torch.inference_mode():
        engine.step()
    held = engine._running[0].pages[:4]
    assert [engine.pool.refcount(p) for p in held] == [1, 1, 1, 1]
    _drain(engine)
    a, b = first.result(), second.result()
    assert (a.reused_tokens, b.reused_tokens) == (0, 32)  # 4 full pages of the shared 33 tokens
    assert b.prefilled_tokens == len(prompts[1]) - 32
    assert [a.token_ids, b.token_ids] == want
    engine.clear_prefix_cache()
    assert engine.pool.cached == 0
    again = engine.submit(prompts[1], 10)
    _drain(engine)
    assert again.result().reused_tokens == 0


def test_a_mode_switch_keeps_dense_and_dsa_pages_apart(make_tiny):
    model = make_tiny(seed=6, sa_config={"topk": 4})
    prompt = _prompts(2, model.config.vocab_size)[0]
    engine = BatchEngine(model, max_batch=2, page_size=8, start=False)
    model.set_sparse(False)
    engine.submit(prompt, 4)
    _drain(engine)
    model.set_sparse(True)
    gen = engine.submit(prompt, 6)
    _drain(engine)
    r = gen.result()
    assert r.reused_tokens == 0  # dense pages are no DSA prefix
    assert r.token_ids == _sequential(model, [prompt], 6)[0]


def test_cancel_and_stop_free_pages_at_once(make_tiny):
    model = make_tiny(seed=1)
    prompts = _prompts(3, model.config.vocab_size)
    engine = BatchEngine(model, max_batch=4, page_size=8, start=False, prefix_cache=False)
    cancelled = threading.Event()
    a = engine.submit(prompts[0], 50, cancel=cancelled)
    b = engine.submit(prompts[1], 50)
    with torch.inference_mode():
        engine.step()
        engine.step()
    # pages are taken as the sequences grow: after two steps each holds its prompt and first answer token
    assert engine.pool.used == sum(-(-(len(p) + 1) // 8) for p in prompts[:2])
    cancelled.set()
    b.cancel()
    with torch.inference_mode():
        engine.step()
    assert engine.pool.used == 0 and engine.running == 0
    ra, rb = a.result(), b.result()
    assert ra.finish_reason == rb.finish_reason == "cancelled"
    assert len(ra.token_ids) == 2
    # a consumer that stops listening (on_token returns False) ends its generation as "stop"
    c = engine.submit(prompts[2], 50)
    seen: list[int] = []
    for _ in range(3):
        with torch.inference_mode():
            engine.step()
    rc = c.result(on_token=lambda t: seen.append(t) is not None)
    assert rc.finish_reason == "stop" and rc.token_ids == seen[:1]
    with torch.inference_mode():
        engine.step()
    assert engine.pool.used == 0


def test_a_request_waits_for_pages_and_one_that_never_fits_is_refused(make_tiny):
    model = make_tiny(seed=2)
    prompts = _prompts(4, model.config.vocab_size, tails=(8, 8))
    # 8 pages of 8 tokens: one prompt of 48 tokens (7 pages with its first answer token) fits, not two
    engine = BatchEngine(model, max_batch=4, page_size=8, cache_tokens=64, start=False, prefix_cache=False)
    with pytest.raises(ContextWindowError, match="cache_tokens"):
        engine.submit(list(range(70)), 2)
    gens = [engine.submit(p, 12) for p in prompts[:2]]
    with torch.inference_mode():
        engine.step()
    assert (engine.running, engine.waiting) == (1, 1)
    _drain(engine)
    assert engine.stats.max_running == 1
    assert [g.result().token_ids for g in gens] == _sequential(model, prompts[:2], 12)
    # a sequence that outgrows the whole pool alone ends with the same error
    long = engine.submit(list(range(56)), 20)
    _drain(engine)
    with pytest.raises(ContextWindowError, match="outgrew the whole page pool"):
        long.result()
    assert engine.pool.used == 0
    with pytest.raises(ContextWindowError, match="max_seq_len"):
        BatchEngine(model, max_seq_len=32, start=False).submit(list(range(30)), 8)


@pytest.mark.parametrize("sparse", [False, True])
def test_preempted_sequences_resume_where_they_stopped(make_tiny, sparse):
    model = make_tiny(seed=9, sa_config={"topk": 6})
    model.set_sparse(sparse)
    prompts = _prompts(7, model.config.vocab_size, system=20, tails=(10, 12))[:2]
    want = _sequential(model, prompts, 30)
    # 12 pages of 8 tokens: both prompts fit, both answers (about 60 tokens, 8 pages each) do not
    engine = BatchEngine(model, max_batch=2, page_size=8, cache_tokens=96, start=False)
    gens = [engine.submit(p, 30) for p in prompts]
    _drain(engine)
    assert engine.stats.preemptions >= 1 and engine.stats.max_running == 2
    assert [g.result().token_ids for g in gens] == want
    assert engine.pool.used == 0


def test_per_request_sampling_seed_stop_ids_and_masks(make_tiny):
    model = make_tiny(seed=4)
    prompts = _prompts(5, model.config.vocab_size)
    greedy_ref = _sequential(model, prompts[:1], 8)[0]
    stop = greedy_ref[3]
    sampled = SamplingParams(temperature=0.9, top_p=0.9, top_k=50, repetition_penalty=1.2, seed=11)

    def gen(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    with torch.inference_mode():
        want_sampled = generate(model, prompts[1], 8, sampled, stop_token_ids=[]).token_ids

    class Allow:
        """A TokenMask that allows only even ids, and ends after four tokens."""

        def __init__(self) -> None:
            self.n = 0

        def mask(self, logits: torch.Tensor) -> None:
            logits[1::2] = float("-inf")

        def accept(self, token_id: int) -> None:
            assert token_id % 2 == 0
            self.n += 1

        @property
        def terminated(self) -> bool:
            return self.n >= 4

    engine = BatchEngine(model, max_batch=4, page_size=8, start=False)
    g_stop = engine.submit(prompts[0], 8, stop_ids=[stop])
    g_sampled = engine.submit(prompts[1], 8, sampled, generator=gen(11))
    g_masked = engine.submit(prompts[2], 8, mask=Allow())
    g_zero = engine.submit(prompts[3], 0)
    _drain(engine)
    r = g_stop.result()
    assert (r.token_ids, r.finish_reason, r.stop_token_id) == (greedy_ref[:3], "stop", stop)
    assert len(r.step_times) == 4
    assert g_sampled.result().token_ids == want_sampled
    m = g_masked.result()
    assert m.finish_reason == "stop" and len(m.token_ids) == 4 and all(t % 2 == 0 for t in m.token_ids)
    assert g_zero.result().token_ids == [] and g_zero.done


def test_many_threads_calling_generate_at_once(make_tiny):
    model = make_tiny(seed=8, sa_config={"topk": 5})
    model.set_sparse(True)
    prompts = _prompts(6, model.config.vocab_size, tails=(2, 4, 6, 8, 10, 12))
    want = _sequential(model, prompts, 9)
    engine = BatchEngine(model, max_batch=3, page_size=4)
    got: dict[int, list[int]] = {}

    def call(i: int) -> None:
        got[i] = engine.generate(prompts[i], 9).token_ids

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    engine.close()
    assert [got[i] for i in range(len(prompts))] == want
    assert engine.pool.used == 0
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(prompts[0], 2)


def test_batch_decode_graph_checks_its_inputs(make_tiny):
    from keye_agent.model.batch_graph import BatchDecodeGraph, bucket
    from keye_agent.model.paged import PagePool

    assert [bucket(n) for n in (1, 2, 3, 5, 33)] == [1, 2, 4, 8, 64] and bucket(1, 4) == 4
    model = make_tiny()
    pool = PagePool(model.config, 8, 4)
    g = BatchDecodeGraph(model, pool, 2, 4, sparse=model.sparse)
    assert g.graph is None  # CPU: the same fixed-shape step, eager
    with torch.inference_mode():
        assert g([5], [torch.tensor([0])], [0]).shape == (1, model.config.vocab_size)
        with pytest.raises(ValueError, match="for a graph of 2 rows"):
            g([1, 2, 3], [torch.tensor([0])] * 3, [0, 0, 0])
        with pytest.raises(ValueError, match="exceeds 4"):
            g([1], [torch.arange(5)], [0])
    with pytest.raises(ValueError, match="needs a CUDA model"):
        BatchDecodeGraph(model, pool, 2, 4, False, use_graph=True)


def test_exit_while_a_generation_runs_closes_the_engine_cleanly(tmp_path):
    """The interpreter exits while the scheduler thread is mid-generation: the engine is closed at exit (after its
    current step), so the process ends normally instead of aborting inside a torch op."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (
        "import torch\n"
        "from keye_agent.model import build_model\n"
        "from keye_agent.model.batch import BatchEngine\n"
        "m = build_model('tiny', 'cpu', torch.float32, seed=0)\n"
        "e = BatchEngine(m, max_batch=2, page_size=8)\n"
        "g = e.submit(list(range(50)), 3000)\n"
        "g._events.get()\n"  # admitted; then leave it running
        "print('exiting')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "exiting" and "terminate called" not in proc.stderr
