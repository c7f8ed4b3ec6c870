"""Continuous batching (model.batch.BatchEngine) against batch-1 sequential serving, in the same run.

Agent-like conversations: one shared system prompt (``--system-tokens``, random ids) plus a distinct tail each
(``--tail-tokens``), ``--new-tokens`` greedy tokens each (no stop ids, so every answer has that length). For each
concurrency C (``--concurrency``, default 1,8,32,64) C conversations are submitted at once to an engine of
``max_batch`` C whose pool already holds the system prompt (a warm-up wave with other tails ran first, as sibling
simulations would): aggregate tokens/s (all answers' tokens over the wall time of the wave), per-request decode
tokens/s and step time, time to first token. The baseline is today's batch-1 path, measured in the same run:
``--baseline-requests`` conversations one after another through ``model.generate.decode_tokens`` on a static
cache that keeps the common prefix with the previous conversation (what KeyeBackend does with ``max_batch=1``),
with one decode graph on CUDA (the fused step, captured once). Then TTFT on a prefix-cache hit against a miss (one request at a time, pool
emptied before each miss).

Correctness first: on a sample of ``--check`` conversations the batched greedy tokens must equal the sequential
ones, or the script stops before printing a figure. In float32 the check runs on the benchmarked model; in bf16
(where batched and batch-1 GEMMs round differently, so random-weight logits may tie-break apart) it runs on the
tiny preset in float32 on the same device and code path, and the big model's agreement is printed beside it.

    python benchmarks/serve.py --preset tiny --device cpu
    python benchmarks/serve.py --preset keye-vl-2.0-30b-a3b --device cuda        # random bf16 weights
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keye_agent.model import build_model  # noqa: E402
from keye_agent.model.batch import BatchEngine  # noqa: E402
from keye_agent.model.generate import CacheStep, DecodeResult, decode_tokens, run_decode  # noqa: E402
from keye_agent.model.sampling import SamplingParams  # noqa: E402


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "?"
    except OSError:
        return "?"


def conversations(vocab: int, system: int, tail: int, n: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    shared = torch.randint(0, vocab, (system,), generator=g).tolist()
    g.manual_seed(seed)
    return [shared + torch.randint(0, vocab, (tail,), generator=g).tolist() for _ in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def sequential(model, prompts: list[list[int]], new: int, graph: bool, warm: int = 0) -> tuple[list[list[int]], dict]:
    """Batch-1 serving: one conversation after another on one cache that keeps the common prefix; the first
    ``warm`` ones are not timed (they fill the cache with the system prompt, as the engine's warm-up wave does)."""
    dev = model.model.embed_tokens.weight.device
    cache = model.new_cache(1, max(len(p) for p in prompts) + new + 1)
    step = CacheStep(model, cache, graph)  # one decode graph for the whole run (captured once, on CUDA)
    held: list[int] = []
    outs, steps, ttft = [], [], []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i, p in enumerate(prompts):
            if i == warm:
                sync(dev)
                outs, steps, ttft = [], [], []
                t0 = time.perf_counter()
            keep = 0
            while keep < min(len(held), len(p) - 1) and held[keep] == p[keep]:
                keep += 1
            cache.truncate(keep)
            r = DecodeResult(prompt_tokens=len(p), reused_tokens=keep)
            run_decode(decode_tokens(step, p, p[keep:], new, SamplingParams(), [], r), r, None)
            sync(dev)
            outs.append(r.token_ids)
            steps += r.step_times[1:]
            ttft.append(r.prefill_s)
            held = p + r.token_ids[:-1]
    wall = time.perf_counter() - t0
    return outs, {"agg_tok_s": len(outs) * new / wall, "step_ms": 1e3 * statistics.median(steps),
                  "ttft_ms": 1e3 * statistics.median(ttft), "requests": len(outs)}


ENGINE_KW: dict = {}  # from --decode-step


def engine_for(model, c: int, longest: int, page: int) -> BatchEngine:
    return BatchEngine(model, max_batch=c, page_size=page, cache_tokens=(c + 1) * (longest + page),
                       max_seq_len=longest + page, **ENGINE_KW)


def release(engine: BatchEngine) -> None:
    """Stop an engine and give its pool and graphs back to the device before the next one is built."""
    engine.close()
    engine._graphs.clear()
    del engine
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def wave(engine: BatchEngine, prompts: list[list[int]], new: int) -> tuple[list[list[int]], dict]:
    dev = engine.device
    sync(dev)
    t0 = time.perf_counter()
    gens = [engine.submit(p, new) for p in prompts]
    results = [g.result() for g in gens]
    wall = time.perf_counter() - t0
    steps = [s for r in results for s in r.step_times[1:]]
    dec = [(len(r.token_ids) - 1) / r.decode_s for r in results if r.decode_s > 0]
    return [r.token_ids for r in results], {
        "agg_tok_s": len(prompts) * new / wall, "req_tok_s": statistics.median(dec) if dec else 0.0,
        "step_ms": 1e3 * statistics.median(steps) if steps else 0.0,
        "ttft_ms": 1e3 * statistics.median(r.prefill_s for r in results),
        "reused": sum(r.reused_tokens for r in results), "max_running": engine.stats.max_running}


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """Mean fraction of each answer that agrees before the first differing token."""
    fr = []
    for x, y in zip(a, b, strict=True):
        n = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
        fr.append(n / max(1, len(x)))
    return statistics.mean(fr)


def check(model, args, graph: bool) -> None:
    prompts = conversations(model.config.vocab_size, args.system_tokens, args.tail_tokens, args.check, seed=99)
    want, _ = sequential(model, prompts, args.new_tokens, graph)
    engine = engine_for(model, args.check, len(prompts[0]) + args.new_tokens, args.page_size)
    got, _ = wave(engine, prompts[:1], args.new_tokens)  # the first one caches the system prompt...
    more, _ = wave(engine, prompts[1:], args.new_tokens)  # ...the others reuse it, batched
    release(engine)
    if got + more != want:
        raise SystemExit(f"batched greedy tokens differ from sequential ones (agreement {agreement(got + more, want):.3f}):"
                         " no figures printed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=[None, "float32", "bfloat16"])
    ap.add_argument("--dense", action="store_true", help="dense attention instead of DSA")
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--system-tokens", type=int, default=4096)
    ap.add_argument("--tail-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--page-size", type=int, default=32)
    ap.add_argument("--baseline-requests", type=int, default=4)
    ap.add_argument("--check", type=int, default=4, help="conversations in the correctness check")
    ap.add_argument("--ttft-repeats", type=int, default=3)
    ap.add_argument("--decode-step", default="auto", choices=["auto", "per-sequence", "fixed"],
                    help="auto: the engine's default (batched decode rows; captured graphs on CUDA); per-sequence: "
                         "decode rows attend one by one; fixed: the fixed-shape step (graphs) also off CUDA")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write all figures to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ENGINE_KW.update({"auto": {}, "per-sequence": {"batched_decode": False, "decode_graph": False},
                      "fixed": {"decode_graph": True}}[args.decode_step])
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    graph = dev.type == "cuda"
    model = build_model(args.preset, dev, dtype, random_weights=True, seed=0)
    model.set_sparse(not args.dense and model.config.sa_config is not None)
    mode = "DSA" if model.sparse else "dense"
    label = (f"{args.preset}, {dtype}, {mode}, device {dev.type}"
             f"{' ' + torch.cuda.get_device_name(dev) if dev.type == 'cuda' else ' ' + platform.processor()}")
    print(f"# {label}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads; commit {commit()}", flush=True)
    print(f"# system {args.system_tokens} + tail {args.tail_tokens} tokens, {args.new_tokens} new tokens each, "
          f"page {args.page_size}, decode step {args.decode_step}", flush=True)
    figures: dict = {"label": label, "commit": commit(), "args": vars(args)}

    if dtype == torch.float32:
        check(model, args, graph)
        print(f"# check: batched == sequential greedy on {args.check} conversations ({mode}, float32)", flush=True)
    else:
        small = build_model("tiny", dev, torch.float32, random_weights=True, seed=0)
        small.set_sparse(model.sparse)
        check(small, args, graph)
        prompts = conversations(model.config.vocab_size, args.system_tokens, args.tail_tokens, args.check, seed=99)
        want, _ = sequential(model, prompts, args.new_tokens, graph)
        engine = engine_for(model, args.check, len(prompts[0]) + args.new_tokens, args.page_size)
        got, _ = wave(engine, prompts, args.new_tokens)
        release(engine)
        figures["bf16_agreement"] = agreement(got, want)
        print(f"# check: batched == sequential greedy on the tiny preset in float32 ({mode}, {dev.type}); "
              f"{args.preset} in {dtype}: agreement {figures['bf16_agreement']:.3f}", flush=True)

    vocab = model.config.vocab_size
    longest = args.system_tokens + args.tail_tokens + args.new_tokens
    base_prompts = conversations(vocab, args.system_tokens, args.tail_tokens, args.baseline_requests + 1, seed=1)
    _, base = sequential(model, base_prompts, args.new_tokens, graph, warm=1)
    figures["sequential"] = base
    print(f"# batch-1 sequential: {base['agg_tok_s']:.1f} tok/s, step {base['step_ms']:.2f} ms, "
          f"TTFT {base['ttft_ms']:.1f} ms", flush=True)

    rows = []
    for c in [int(x) for x in args.concurrency.split(",")]:
        engine = engine_for(model, c, longest, args.page_size)
        warm = conversations(vocab, args.system_tokens, args.tail_tokens, c + 1, seed=1000 + c)
        wave(engine, warm[:1], args.new_tokens)  # caches the system prompt
        wave(engine, warm[1:], args.new_tokens)  # captures the graphs of this wave's buckets
        engine.stats.max_running = 0
        _, fig = wave(engine, conversations(vocab, args.system_tokens, args.tail_tokens, c, seed=2000 + c),
                      args.new_tokens)
        release(engine)
        fig["concurrency"] = c
        rows.append(fig)
        print(f"# C={c}: {fig['agg_tok_s']:.1f} tok/s aggregate", flush=True)
    figures["batched"] = rows

    engine = engine_for(model, 1, longest, args.page_size)
    hits, misses = [], []
    for r in range(args.ttft_repeats + 1):
        a, b = conversations(vocab, args.system_tokens, args.tail_tokens, 2, seed=3000 + r)
        engine.clear_prefix_cache()
        _, miss = wave(engine, [a], 2)
        _, hit = wave(engine, [b], 2)
        if r:  # the first round is warm-up
            misses.append(miss["ttft_ms"])
            hits.append(hit["ttft_ms"])
    release(engine)
    ttft = {"miss_ms": statistics.median(misses), "hit_ms": statistics.median(hits)}
    figures["ttft"] = ttft

    print()
    print("| concurrent | aggregate tok/s | x batch-1 | per-request decode tok/s | step ms | step / batch-1 step "
          "| TTFT ms | running at once |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| batch-1 sequential ({base['requests']} requests) | {base['agg_tok_s']:.1f} | 1.00 | "
          f"{1e3 / base['step_ms']:.1f} | {base['step_ms']:.2f} | 1.00 | {base['ttft_ms']:.1f} | 1 |")
    for f in rows:
        print(f"| {f['concurrency']} | {f['agg_tok_s']:.1f} | {f['agg_tok_s'] / base['agg_tok_s']:.2f} | "
              f"{f['req_tok_s']:.1f} | {f['step_ms']:.2f} | {f['step_ms'] / base['step_ms']:.2f} | "
              f"{f['ttft_ms']:.1f} | {f['max_running']} |")
    print()
    print(f"TTFT, one request, system prompt {args.system_tokens} tokens: miss {ttft['miss_ms']:.1f} ms, "
          f"prefix hit {ttft['hit_ms']:.1f} ms, hit / miss {ttft['hit_ms'] / ttft['miss_ms']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
