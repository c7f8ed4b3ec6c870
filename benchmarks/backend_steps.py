"""Latency of a 10-step planner conversation through KeyeBackend, with and without prefix reuse.

Each step the model sees the whole conversation (system prompt, four tool schemas, the task, every earlier step)
and writes a short reply (greedy, ``--reply-tokens``); a scripted tool call and its result (search results, a page,
code output; 300-700 characters) are appended, as a planner loop does. Pass 1 runs the conversation live with
prefix reuse (the KV cache of the common prefix is kept: each step prefills only the new tokens). Pass 2, the
baseline, replays the very same prompts with reuse off (every step prefills its whole prompt). Both passes use one
backend, one model and one cache allocation; their greedy tokens are compared step by step before the table.

    python benchmarks/backend_steps.py                                   # tiny preset, CPU, float32
    python benchmarks/backend_steps.py --preset keye-vl-2.0-30b-a3b --device cuda --ops reference

Presets carry random weights and, unless ``--tokenizer DIR`` is given, the stand-in byte-level tokenizer of the
Keye backend (its ids differ from Qwen's; token counts are printed with every row). The whole KeyeBackend path
runs: rendering, tokenizing, the prefix match, prefill, decode, detokenising and the tool-call parser.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keye_agent.backends.keye import KeyeBackend  # noqa: E402
from keye_agent.model import ops  # noqa: E402
from keye_agent.types import GenerationSettings, Message, ToolCall  # noqa: E402


def _fn(name: str, desc: str, props: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": desc, "parameters": {
        "type": "object", "properties": props, "required": required, "additionalProperties": False}}}


TOOLS = [
    _fn("web_search", "Search the web; returns titles, URLs and snippets.",
        {"query": {"type": "string", "description": "What to search for."},
         "max_results": {"type": "integer", "minimum": 1, "maximum": 10}}, ["query"]),
    _fn("fetch_url", "Fetch a web page and return its readable text.",
        {"url": {"type": "string", "description": "The page's address."}}, ["url"]),
    _fn("run_code", "Run Python code in a sandbox; state persists between calls.",
        {"code": {"type": "string", "description": "Python source."}}, ["code"]),
    _fn("lookup_person", "Look a person up in the staff directory.",
        {"name": {"type": "string", "description": "Full name."}}, ["name"]),
]
SYSTEM = ("You are a careful research agent. Plan, call tools to gather facts, check your work with code, and cite "
          "the sources you used. Never invent a fact that no tool returned.")
TASK = "Find the population of the three largest cities of Portugal and compute their total; cite your sources."

SEARCH = ("1. Lisbon - Wikipedia - https://en.wikipedia.org/wiki/Lisbon - Lisbon is the capital and largest city "
          "of Portugal, with an estimated population of 567,131 within its administrative limits.\n"
          "2. Porto - Wikipedia - https://en.wikipedia.org/wiki/Porto - Porto is the second largest city in "
          "Portugal, with a population of 231,800 in the municipality.\n"
          "3. Largest cities in Portugal - https://example.org/pt-cities - Vila Nova de Gaia 304,149; Amadora "
          "171,454; Braga 193,333; Funchal 105,795.")
PAGE = ("Lisbon (Portuguese: Lisboa) is the capital and largest city of Portugal. The municipality had 567,131 "
        "residents in 2021, while the metropolitan area counts about 2.9 million. It lies on the Tagus estuary and "
        "is one of the oldest cities of western Europe. Its economy rests on services, tourism and the port. " * 2)
CODE = "total = 567131 + 304149 + 231800\nprint(total)\n--- output ---\n1103080\n"
SCRIPT = [
    ("web_search", {"query": "largest cities of Portugal population"}, SEARCH),
    ("fetch_url", {"url": "https://en.wikipedia.org/wiki/Lisbon"}, PAGE),
    ("web_search", {"query": "Vila Nova de Gaia population 2021 census"}, SEARCH),
    ("fetch_url", {"url": "https://example.org/pt-cities"}, PAGE),
    ("run_code", {"code": "total = 567131 + 304149 + 231800\nprint(total)"}, CODE),
    ("lookup_person", {"name": "Ana Lima"}, "Ana Lima: statistician, INE Portugal, extension 4821."),
    ("web_search", {"query": "INE Portugal census 2021 municipalities"}, SEARCH),
    ("fetch_url", {"url": "https://en.wikipedia.org/wiki/Porto"}, PAGE),
    ("run_code", {"code": "print(sorted([567131, 304149, 231800], reverse=True))"}, CODE),
    ("web_search", {"query": "Portugal city population ranking municipality"}, SEARCH),
]


def step_settings(n: int) -> GenerationSettings:
    return GenerationSettings(max_tokens=n, temperature=0.0)


def run_live(backend: KeyeBackend, steps: int, reply: int) -> tuple[list[list[Message]], list[dict]]:
    """The conversation run live with prefix reuse; returns the prompt of each step and its figures."""
    msgs = [Message.system(SYSTEM), Message.user(TASK)]
    prompts, rows = [], []
    for i in range(steps):
        prompts.append(list(msgs))
        t0 = time.perf_counter()
        turn = backend.generate(msgs, TOOLS, step_settings(reply))
        rows.append(figures(backend, time.perf_counter() - t0))
        name, args, result = SCRIPT[i % len(SCRIPT)]
        call = ToolCall(id=f"call_{i}", name=name, arguments=args)
        msgs = msgs + [Message.assistant(turn.raw, [call]), Message.tool(call.id, name, result)]
    return prompts, rows


def replay(backend: KeyeBackend, prompts: list[list[Message]], reply: int) -> list[dict]:
    rows = []
    for msgs in prompts:
        t0 = time.perf_counter()
        backend.generate(msgs, TOOLS, step_settings(reply))
        rows.append(figures(backend, time.perf_counter() - t0))
    return rows


def figures(backend: KeyeBackend, wall: float) -> dict:
    r = backend.last_result
    assert r is not None
    return {"wall_s": wall, "prompt": r.prompt_tokens, "reused": r.reused_tokens, "prefilled": r.prefilled_tokens,
            "ttft_s": r.prefill_s, "decode_s": r.decode_s, "tokens": list(r.token_ids)}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("KEYE_COMMIT", "unknown")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, choices=[None, "float32", "bfloat16"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reply-tokens", type=int, default=8)
    ap.add_argument("--ops", default="auto", choices=["auto", "reference", "triton"], help="attention/indexer ops")
    ap.add_argument("--dense", action="store_true", help="dense attention instead of DSA")
    ap.add_argument("--tokenizer", default=None, help="a directory with tokenizer.json (default: the stand-in)")
    ap.add_argument("--json", default=None, help="write all figures to this file")
    ap.add_argument("--warmup-steps", type=int, default=None, help="steps of the warm-up run (default: --steps)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--decode-graph", default="auto", choices=["auto", "on", "off"],
                    help="one-token steps through the captured decode graph (auto: on for CUDA)")
    ap.add_argument("--compare-steps", action="store_true",
                    help="after the main run, the conversation with the old (static) and the new (fused) decode "
                         "step, same backend and prompts: totals, median decode and greedy tokens compared")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ops.set_backend(args.ops)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, None: None}[args.dtype]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in tokenizer's notice: this script states it below
        backend = KeyeBackend(args.preset, random_weights=True, device=args.device, dtype=dtype,
                              tokenizer=args.tokenizer, constrained=False, sparse=False if args.dense else None,
                              decode_graph={"auto": None, "on": True, "off": False}[args.decode_graph])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in backend.model.parameters())
    wdtype = backend.model.model.embed_tokens.weight.dtype
    print(f"preset {args.preset}: {params / 1e9:.2f} B parameters, {wdtype}, random weights built in {build_s:.1f} s; "
          f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}); "
          f"ops {ops.get_backend()}; attention {'DSA' if backend.model.sparse else 'dense'}; "
          f"decode graph {'on' if backend.decode_graph else 'off'}; "
          f"tokenizer {'stand-in BPE, ' if args.tokenizer is None else ''}{backend.tokenizer.vocab_size} ids; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; commit {commit()}", flush=True)

    # warm-up over the whole conversation (kernels and shapes, DSA past its top-k, the grown cache), then an empty
    # cache for the timed passes
    run_live(backend, args.warmup_steps if args.warmup_steps is not None else args.steps, args.reply_tokens)
    backend.reset_cache()
    backend.prefix_reuse = True
    prompts, warm = run_live(backend, args.steps, args.reply_tokens)
    backend.prefix_reuse = False
    cold = replay(backend, prompts, args.reply_tokens)

    same = [w["tokens"] == c["tokens"] for w, c in zip(warm, cold, strict=True)]
    print(f"greedy tokens identical with and without reuse at {sum(same)}/{len(same)} steps"
          + ("" if all(same) else f" (differ at steps {[i + 1 for i, s in enumerate(same) if not s]})"))
    peak = ""
    if args.device.startswith("cuda"):
        peak = f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    print(f"cache: {backend._caches[0].cache.max_seq_len} tokens, {backend._caches[0].cache.nbytes / 2**20:.0f} MiB{peak}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "build_s": build_s, "params": params,
                                               "reuse": warm, "cold": cold}, indent=1))

    print(f"\n{args.steps}-step planner conversation, {args.reply_tokens}-token greedy replies "
          "(ms; TTFT = prefill + first token)")
    print("| step | prompt tok | reuse: prefilled | reuse: TTFT | reuse: step | cold: TTFT | cold: step | step ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (w, c) in enumerate(zip(warm, cold, strict=True), 1):
        print(f"| {i} | {w['prompt']} | {w['prefilled']} | {w['ttft_s'] * 1e3:.1f} | {w['wall_s'] * 1e3:.1f} | "
              f"{c['ttft_s'] * 1e3:.1f} | {c['wall_s'] * 1e3:.1f} | {c['wall_s'] / w['wall_s']:.2f}x |")
    tw, tc = sum(r["wall_s"] for r in warm), sum(r["wall_s"] for r in cold)
    fw, fc = sum(r["ttft_s"] for r in warm), sum(r["ttft_s"] for r in cold)
    pw, pc = sum(r["prefilled"] for r in warm), sum(r["prefilled"] for r in cold)
    dec = statistics.median(r["decode_s"] / max(1, len(r["tokens"]) - 1) for r in warm + cold)
    print(f"| all | | {pw} (cold {pc}) | {fw * 1e3:.0f} | {tw * 1e3:.0f} | {fc * 1e3:.0f} | {tc * 1e3:.0f} | "
          f"{tc / tw:.2f}x |")
    print(f"\nconversation total: {tw:.2f} s with prefix reuse vs {tc:.2f} s without ({tc / tw:.2f}x); prefill time "
          f"{fw:.2f} s vs {fc:.2f} s ({fc / fw:.1f}x); median decode {dec * 1e3:.1f} ms/token")

    if args.compare_steps:
        compare_steps(backend, args)


def compare_steps(backend: KeyeBackend, args: argparse.Namespace) -> None:
    """The live conversation (prefix reuse on) once per decode step, old ("static") then new ("fused")."""
    from keye_agent.model import graph

    runs = {}
    for name in ("static", "fused"):
        graph.set_default_step(name)
        for pc in backend._caches:
            getattr(pc, "_graphs", {}).clear()  # graphs captured with the other step
        backend.reset_cache()
        backend.prefix_reuse = True
        run_live(backend, args.steps, args.reply_tokens)  # warm-up: capture, kernels
        backend.reset_cache()
        runs[name] = run_live(backend, args.steps, args.reply_tokens)[1]
    graph.set_default_step("auto")
    old, new = runs["static"], runs["fused"]
    same = sum(o["tokens"] == n["tokens"] for o, n in zip(old, new, strict=True))
    print(f"\nold (static) vs new (fused) decode step, {args.steps}-step conversation with prefix reuse; greedy "
          f"replies identical at {same}/{len(old)} steps")
    print("| decode step | conversation s | prefill (TTFT) s | median decode ms/token |")
    print("|---|---|---|---|")
    for name, rows in runs.items():
        dec = statistics.median(r["decode_s"] / max(1, len(r["tokens"]) - 1) for r in rows)
        print(f"| {name} | {sum(r['wall_s'] for r in rows):.2f} | {sum(r['ttft_s'] for r in rows):.2f} | "
              f"{dec * 1e3:.2f} |")


if __name__ == "__main__":
    main()
