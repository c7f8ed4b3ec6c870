"""DSA kernels on one GPU: bf16 correctness first, then decode and prefill per layer against dense SDPA (issue 10).

Run on the device machine from the repository root:
    PYTHONPATH=. python3 benchmarks/dsa.py --check --commit <sha> --out $OUT
--check runs tests/model/kernels (bf16 on CUDA) first; every kernel must also pass a check at the benchmark's own
shapes (rows sampled against the float32 references). A row whose kernel failed either check prints REFUSED.
Shapes are Keye-VL-2.0's: 32 query heads, 4 KV heads, head dim 128; indexer 16 heads x 64; top-k 2048.
Index patterns for sparse attention (random weights cannot show a trained indexer's selections):
  shared: each block of 16 consecutive queries shares one set drawn uniformly from the block's first query's
          causal keys (the trained-model regime); random: each query draws its own set from its causal keys.
Queries whose causal range is not longer than k select all of it in both patterns (that is what DSA does).
--tiny runs the same code path at toy sizes (CPU with TRITON_INTERPRET=1 works) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from keye_agent.model.kernels.indexer.naive import index_scores_ref
from keye_agent.model.kernels.indexer.scores import SCORE_CONFIG, launch_scores
from keye_agent.model.kernels.indexer.streamed import DEFAULT_CHUNK_BYTES, indexer_topk
from keye_agent.model.kernels.sparse_attention.api import UNION_RATIO, sparse_attention
from keye_agent.model.kernels.sparse_attention.block_union import (
    UNION_CONFIG,
    block_queries,
    build_union,
    launch_block_union,
)
from keye_agent.model.kernels.sparse_attention.naive import sparse_attention_ref
from keye_agent.model.kernels.sparse_attention.per_query import PER_QUERY_CONFIG
from keye_agent.model.kernels.topk.naive import selection_problem
from keye_agent.model.kernels.topk.radix import TOPK_CONFIG

TEST_FILES = {
    "test_index_scores": "index_scores",
    "test_topk": "topk_select",
    "test_indexer_topk": "indexer_topk",
    "test_sparse_attention": "sparse_attention",
}


@dataclass
class Shapes:
    hq: int = 32
    hkv: int = 4
    d: int = 128
    hi: int = 16
    di: int = 64
    topk: int = 2048
    block: int = 16  # queries per shared set (128 / G)


class Clock:
    """Median time of a callable: CUDA events on the GPU (after a warm-up), perf_counter on the CPU."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def ms(self, fn, reps: int, warmup: int = 1) -> float:
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(reps):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def graph_ms(self, fn, reps: int) -> float | None:
        """Time the replay of a CUDA graph of fn (launch gaps removed, as in a captured decode step)."""
        if not self.cuda:
            return None
        fn()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return self.ms(graph.replay, reps, warmup=3)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def rel_rms(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    if not torch.isfinite(out).all():
        return float("inf")
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def run_kernel_tests(out_dir: str | None) -> dict[str, str]:
    """pytest tests/model/kernels; returns {kernel: "pass" | "FAIL (n)"} from its junit report."""
    report = os.path.join(out_dir or "/tmp", "kernel_tests.xml")
    cmd = [sys.executable, "-m", "pytest", "tests/model/kernels", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
    status = {kernel: 0 for kernel in TEST_FILES.values()}
    seen = set()
    if os.path.exists(report):
        for case in ET.parse(report).iter("testcase"):
            module = case.get("classname", "").rsplit(".", 1)[-1]
            if module in TEST_FILES:
                seen.add(module)
                if case.find("failure") is not None or case.find("error") is not None:
                    status[TEST_FILES[module]] += 1
    return {
        kernel: ("FAIL (no report)" if name not in seen else f"FAIL ({status[kernel]})" if status[kernel] else "pass")
        for name, kernel in TEST_FILES.items()
    }


def causal_sets(T: int, sh: Shapes, pattern: str, device: str, chunk_rows: int = 512) -> torch.Tensor:
    """idx [1, T, K] int32, ascending per row, for the "shared" or "random" pattern (see the module docstring)."""
    K = sh.topk
    idx = torch.full((1, T, K), -1, dtype=torch.int32, device=device)
    head = min(T, K)
    ar = torch.arange(K, device=device, dtype=torch.int32)
    idx[0, :head] = torch.where(ar[None, :] <= torch.arange(head, device=device)[:, None], ar[None, :], -1)
    step = sh.block if pattern == "shared" else 1
    owners = torch.arange(K, T, step, device=device)  # rows that draw a set (K is a multiple of the block)
    for c0 in range(0, owners.numel(), chunk_rows):
        rows = owners[c0:c0 + chunk_rows]
        width = int(rows[-1]) + 1
        noise = torch.rand(rows.numel(), width, device=device)
        noise.masked_fill_(torch.arange(width, device=device)[None, :] > rows[:, None], -1.0)
        sets = noise.topk(K, dim=-1, sorted=False).indices.sort(dim=-1).values.to(torch.int32)
        for r in range(step):
            tgt = rows + r
            keep = tgt < T
            idx[0, tgt[keep]] = sets[keep]
    return idx


def useful_bytes(T: int, S0: int, sh: Shapes, elem: int = 2) -> int:
    """Selected K and V bytes of T queries at positions S0 .. S0 + T - 1: sum of min(k, t + 1) x Hkv x D x 2 x 2."""
    t = torch.arange(S0, S0 + T, dtype=torch.float64)
    return int(torch.clamp(t + 1, max=sh.topk).sum()) * sh.hkv * sh.d * 2 * elem


def ceilings(clock: Clock, device: str, tiny: bool) -> dict[str, float]:
    n = (1 << 20) if tiny else (1 << 31)
    src = torch.randn(n // 2, device=device, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    copy_ms = clock.ms(lambda: dst.copy_(src), reps=5 if tiny else 20)
    m = 256 if tiny else 8192
    a = torch.randn(m, m, device=device, dtype=torch.bfloat16)
    b = torch.randn(m, m, device=device, dtype=torch.bfloat16)
    mm_ms = clock.ms(lambda: a @ b, reps=3 if tiny else 20)
    return {"copy_GBps": 2 * n / copy_ms / 1e6, "bf16_gemm_TFLOPs": 2 * m**3 / mm_ms / 1e9}


def decode_rows(S: int, sh: Shapes, clock: Clock, device: str, ok: dict[str, bool], tiny: bool) -> dict:
    """One query at position S - 1 against caches of S keys: ours (indexer + top-k + sparse attention) vs dense."""
    dt = torch.bfloat16 if device == "cuda" else torch.float32
    per_set = S * (sh.hkv * sh.d * 4 + sh.di * 2)
    sets = 1 if tiny else max(1, -(-(512 << 20) // per_set))  # rotate caches so they do not sit in L2
    scale = sh.d**-0.5
    data = []
    for _ in range(sets):
        kv = torch.randn(1, S + 64, sh.hkv, 2, sh.d, device=device, dtype=dt)
        kidx = torch.randn(1, S + 64, sh.di, device=device, dtype=dt)
        kvd = torch.randn(1, sh.hkv, 2, S + 64, sh.d, device=device, dtype=dt)  # dense layout [B, Hkv, S, D]
        data.append(dict(
            q=torch.randn(1, 1, sh.hq, sh.d, device=device, dtype=dt),
            qi=torch.randn(1, 1, sh.hi, sh.di, device=device, dtype=dt),
            w=torch.randn(1, 1, sh.hi, device=device, dtype=dt) * sh.hi**-0.5,
            k=kv[:, :S, :, 0], v=kv[:, :S, :, 1], kidx=kidx[:, :S],
            kd=kvd[:, :, 0, :S], vd=kvd[:, :, 1, :S],
        ))
    def dense():
        for x in data:
            F.scaled_dot_product_attention(x["q"].transpose(1, 2), x["kd"], x["vd"], scale=scale, enable_gqa=True)

    reps = 3 if tiny else 100
    per = 1e3 / sets  # ms for all sets -> us per layer step
    row: dict = {"S": S, "sets": sets, "dense_eager_us": clock.ms(dense, reps) * per}
    g = clock.graph_ms(dense, reps)
    row["dense_graph_us"] = g * per if g is not None else None
    x = data[0]
    idx = indexer_topk(x["qi"], x["w"], x["kidx"], S - 1, sh.topk)
    problem = selection_problem(idx, index_scores_ref(x["qi"], x["w"], x["kidx"], S - 1), S - 1, sh.topk, 2.0**-10)
    att = sparse_attention(x["q"], x["k"], x["v"], idx, scale)
    err = rel_rms(att, sparse_attention_ref(x["q"], x["k"], x["v"], idx, scale))
    check = {"indexer_topk": problem is None and ok["indexer_topk"], "sparse_attention": err < 1e-2 and ok["sparse_attention"]}
    row.update({"check_topk": problem or "ok", "check_attention_rel_rms": err})
    for x in data:
        x["idx"] = indexer_topk(x["qi"], x["w"], x["kidx"], S - 1, sh.topk)

    def ours():
        for x in data:
            i = indexer_topk(x["qi"], x["w"], x["kidx"], S - 1, sh.topk)
            sparse_attention(x["q"], x["k"], x["v"], i, scale)

    def indexer_only():
        for x in data:
            indexer_topk(x["qi"], x["w"], x["kidx"], S - 1, sh.topk)

    def attention_only():
        for x in data:
            sparse_attention(x["q"], x["k"], x["v"], x["idx"], scale)

    if check["indexer_topk"] and check["sparse_attention"]:
        row["ours_eager_us"] = clock.ms(ours, reps) * per
        for name, fn in (("ours_graph_us", ours), ("indexer_topk_graph_us", indexer_only),
                         ("attention_graph_us", attention_only)):
            g = clock.graph_ms(fn, reps)
            row[name] = g * per if g is not None else None
        best_dense = row["dense_graph_us"] or row["dense_eager_us"]
        row["speedup_graph"] = best_dense / (row["ours_graph_us"] or row["ours_eager_us"])
    else:
        row["REFUSED"] = f"correctness check failed: {check}"
    return row


def union_all(idx: torch.Tensor, T: int, sh: Shapes, chunk: int = 8192) -> list:
    """Block unions of every chunk of queries, as sparse_attention builds them (for timing and the sweep)."""
    bq = block_queries(sh.hq // sh.hkv)
    bitmap = torch.empty(chunk // bq * T, dtype=torch.int32, device=idx.device)
    return [(q0, build_union(idx, q0, min(chunk, T - q0), T, bq, bitmap)) for q0 in range(0, T, chunk)]


def sweep(T: int, sh: Shapes, clock: Clock, device: str) -> list[dict]:
    """Launch settings of each kernel at prefill length T; each variant is checked against the default's output."""
    dt = torch.bfloat16 if device == "cuda" else torch.float32
    scale = sh.d**-0.5
    q = torch.randn(1, T, sh.hq, sh.d, device=device, dtype=dt)
    kv = torch.randn(1, T, sh.hkv, 2, sh.d, device=device, dtype=dt)
    k, v = kv[:, :, :, 0], kv[:, :, :, 1]
    qi = torch.randn(1, T, sh.hi, sh.di, device=device, dtype=dt)
    w = torch.randn(1, T, sh.hi, device=device, dtype=dt) * sh.hi**-0.5
    kidx = torch.randn(1, T, sh.di, device=device, dtype=dt)
    rows = []

    def variants(config: dict, keys: tuple, options: list, run, compare):
        base = dict(config)
        ref = run()
        for opt in options:
            config.update(dict(zip(keys, opt, strict=True)))
            try:
                got = run()
                same = compare(got, ref)
                ms = clock.ms(run, 3) if same else None
                rows.append({"config": dict(config), "ms": ms, "matches_default": same})
            except Exception as exc:  # noqa: BLE001 (a variant that does not compile is reported, not fatal)
                rows.append({"config": dict(config), "ERROR": repr(exc)[:200]})
            print(json.dumps(rows[-1]), flush=True)
            config.update(base)

    def idx_match(a, b):
        return float((a == b).float().mean()) > 0.999

    variants(SCORE_CONFIG, ("max_tiles", "num_warps", "num_stages", "block_s"),
             [(16, 8, 3, 0), (4, 8, 3, 0), (32, 8, 3, 0), (16, 4, 3, 0), (16, 8, 2, 0), (16, 8, 4, 0), (16, 8, 3, 64)],
             lambda: indexer_topk(qi, w, kidx, 0, sh.topk), idx_match)
    variants(TOPK_CONFIG, ("block", "num_warps"), [(4096, 8), (2048, 8), (4096, 16), (8192, 16), (2048, 4), (1024, 4)],
             lambda: indexer_topk(qi, w, kidx, 0, sh.topk), idx_match)
    sets = causal_sets(T, sh, "shared", device)
    unions = union_all(sets, T, sh)
    bq = block_queries(sh.hq // sh.hkv)
    out = torch.empty_like(q)

    def union_attention():
        for q0, u in unions:
            launch_block_union(q, k, v, u, q0, bq, scale, out)
        return out.clone()

    variants(UNION_CONFIG, ("block_n", "num_warps", "num_stages"),
             [(64, 8, 2), (64, 8, 3), (32, 4, 2), (32, 8, 3), (128, 8, 2), (64, 4, 2), (32, 4, 3)],
             union_attention, lambda a, b: rel_rms(a, b) < 1e-2)
    sets = causal_sets(T, sh, "random", device)
    variants(PER_QUERY_CONFIG, ("block_n", "num_warps", "num_stages"),
             [(64, 4, 2), (32, 4, 2), (64, 4, 3), (128, 4, 2), (64, 8, 2), (32, 2, 2), (32, 4, 4)],
             lambda: sparse_attention(q, k, v, sets, scale, path="per_query"), lambda a, b: rel_rms(a, b) < 1e-2)
    return rows


def dense_prefill_ms(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, clock: Clock, reps: int) -> float:
    """Dense causal GQA through torch SDPA, on [B, H, T, D] copies (its native layout, so no copy is timed)."""
    qd, kd, vd = (x.transpose(1, 2).contiguous() for x in (q, k, v))
    return clock.ms(lambda: F.scaled_dot_product_attention(qd, kd, vd, is_causal=True, scale=scale, enable_gqa=True),
                    reps)


def prefill_rows(T: int, sh: Shapes, clock: Clock, device: str, ok: dict[str, bool], tiny: bool,
                 copy_GBps: float) -> dict:
    """T new tokens from position 0: indexer + top-k and sparse attention (both patterns) vs dense causal SDPA."""
    dt = torch.bfloat16 if device == "cuda" else torch.float32
    scale = sh.d**-0.5
    q = torch.randn(1, T, sh.hq, sh.d, device=device, dtype=dt)
    kv = torch.randn(1, T + 64, sh.hkv, 2, sh.d, device=device, dtype=dt)
    k, v = kv[:, :T, :, 0], kv[:, :T, :, 1]
    qi = torch.randn(1, T, sh.hi, sh.di, device=device, dtype=dt)
    w = torch.randn(1, T, sh.hi, device=device, dtype=dt) * sh.hi**-0.5
    kidx = torch.randn(1, T, sh.di, device=device, dtype=dt)
    reps = 2 if tiny else (3 if T >= 100_000 else 5)
    row: dict = {"T": T}

    row["dense_ms"] = dense_prefill_ms(q, k, v, scale, clock, reps)

    # indexer + top-k: check sampled rows, then time the whole and the score kernel alone (same chunks)
    idx = indexer_topk(qi, w, kidx, 0, sh.topk)
    windows = sorted({max(0, T - 8), max(0, T // 2 - 4), max(0, min(T, sh.topk + 8) - 8)})
    problems = []
    for r0 in windows:
        r1 = min(T, r0 + 8)
        ref = index_scores_ref(qi[:, r0:r1], w[:, r0:r1], kidx, r0)
        problems.append(selection_problem(idx[:, r0:r1], ref, r0, sh.topk, 2.0**-10))
    problem = next((p for p in problems if p), None)
    row["check_topk"] = problem or f"ok ({len(windows) * 8} rows)"
    if problem is None and ok["indexer_topk"]:
        row["indexer_topk_ms"] = clock.ms(lambda: indexer_topk(qi, w, kidx, 0, sh.topk), reps)
        chunk = max(1, min(T, DEFAULT_CHUNK_BYTES // (2 * T)))
        buf = torch.empty(chunk * T, dtype=torch.float16, device=device)
        first = min(T, sh.topk)

        def scores_only():
            for t0 in range(first, T, chunk):
                rows = min(chunk, T - t0)
                width = min(T, t0 + rows)
                launch_scores(qi, w, kidx, 0, buf[: rows * width].view(1, rows, width), t0, rows)

        row["scores_only_ms"] = clock.ms(scores_only, reps)
        t = torch.arange(T, dtype=torch.float64)
        row["indexer_TFLOP"] = float((t + 1).sum()) * sh.hi * sh.di * 2 / 1e12
    else:
        row["indexer_topk_ms"] = f"REFUSED: {problem or 'kernel tests failed'}"
    del idx

    nbytes = useful_bytes(T, 0, sh)
    for pattern in ("shared", "random"):
        sets = causal_sets(T, sh, pattern, device)
        rows = sorted({max(0, T - 8), max(0, T // 2 - 4)})
        out = sparse_attention(q, k, v, sets, scale)
        err = max(rel_rms(out[:, r:r + 8], sparse_attention_ref(q[:, r:r + 8], k, v, sets[:, r:r + 8], scale))
                  for r in rows)
        row[f"{pattern}_check_rel_rms"] = err
        if err >= 1e-2 or not ok["sparse_attention"]:
            row[f"{pattern}_attention_ms"] = "REFUSED: correctness check failed"
            continue
        row[f"{pattern}_attention_ms"] = clock.ms(lambda s=sets: sparse_attention(q, k, v, s, scale), reps)
        if pattern == "shared":
            row["shared_union_build_ms"] = clock.ms(lambda s=sets: union_all(s, T, sh), reps)
        forced = "union" if pattern == "shared" else "per_query"
        row[f"{pattern}_{forced}_ms"] = clock.ms(
            lambda s=sets, p=forced: sparse_attention(q, k, v, s, scale, path=p), reps)
        best = min(row[f"{pattern}_attention_ms"], row[f"{pattern}_{forced}_ms"])
        row[f"{pattern}_useful_GBps"] = nbytes / best / 1e6
        row[f"{pattern}_gather_fraction_of_copy"] = row[f"{pattern}_useful_GBps"] / copy_GBps
        if isinstance(row.get("indexer_topk_ms"), float):
            row[f"{pattern}_total_ms"] = row["indexer_topk_ms"] + row[f"{pattern}_attention_ms"]
            row[f"{pattern}_speedup"] = row["dense_ms"] / row[f"{pattern}_total_ms"]
    row["useful_GB"] = nbytes / 1e9
    return row


def fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="run tests/model/kernels first (refuse failed kernels)")
    ap.add_argument("--tiny", action="store_true", help="toy sizes, to check the script (CPU interpreter works)")
    ap.add_argument("--decode", default=None, help="cache lengths, comma-separated (default 32768,131072,262144)")
    ap.add_argument("--prefill", default=None, help="prefill lengths (default 32768,65536,131072)")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--sweep", type=int, default=0, help="prefill length at which to sweep launch settings")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sh = Shapes(hq=8, hkv=2, d=32, hi=4, di=16, topk=32, block=4) if args.tiny else Shapes()
    args.decode = args.decode if args.decode is not None else ("300" if args.tiny else "32768,131072,262144")
    args.prefill = args.prefill if args.prefill is not None else ("80,150" if args.tiny else "32768,65536,131072")
    clock = Clock(device)
    info = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__, "commit": args.commit, "union_ratio": UNION_RATIO,
    }
    import triton

    info["triton"] = triton.__version__
    tests = run_kernel_tests(args.out) if args.check else {k: "not run" for k in TEST_FILES.values()}
    ok = {k: not v.startswith("FAIL") for k, v in tests.items()}
    info["kernel_tests"] = tests
    info.update(ceilings(clock, device, args.tiny))
    print(json.dumps(info), flush=True)
    results = {"info": info, "decode": [], "prefill": []}
    jobs = [("decode", S, lambda S=S: decode_rows(S, sh, clock, device, ok, args.tiny))
            for S in map(int, args.decode.split(",")) if S]
    jobs += [("prefill", T, lambda T=T: prefill_rows(T, sh, clock, device, ok, args.tiny, info["copy_GBps"]))
             for T in map(int, args.prefill.split(",")) if T]
    for kind, size, job in jobs:
        try:
            results[kind].append(job())
        except Exception as exc:  # noqa: BLE001 (the traceback is printed; other rows still run)
            # keep the other rows: print where it broke, record the row as failed
            traceback.print_exc()
            results[kind].append({"S" if kind == "decode" else "T": size, "ERROR": repr(exc)[:300]})
        print(json.dumps(results[kind][-1]), flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
        if args.out:
            with open(os.path.join(args.out, "dsa.json"), "w") as f:
                json.dump(results, f, indent=1)
    if args.sweep and ok["indexer_topk"] and ok["sparse_attention"]:
        results["sweep"] = sweep(args.sweep, sh, clock, device)
        if args.out:
            with open(os.path.join(args.out, "dsa.json"), "w") as f:
                json.dump(results, f, indent=1)
    print(f"\n{info['device']}, torch {info['torch']}, triton {info['triton']}, commit {args.commit}; "
          f"copy {info['copy_GBps']:.0f} GB/s, bf16 GEMM {info['bf16_gemm_TFLOPs']:.0f} TFLOP/s; tests {tests}")
    print("\n| decode S | ours graph us | indexer+topk us | attention us | ours eager us | dense graph us | "
          "dense eager us | speedup (graph) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["decode"]:
        if "ERROR" in r:
            print(f"| {r['S']} | ERROR {r['ERROR']} |")
            continue
        keys = ("ours_graph_us", "indexer_topk_graph_us", "attention_graph_us", "ours_eager_us", "dense_graph_us",
                "dense_eager_us", "speedup_graph")
        print(f"| {r['S']} | " + " | ".join(fmt(r.get(k, r.get('REFUSED'))) for k in keys) + " |")
    for r in results.get("sweep", []):
        print("sweep", r)
    print("\n| prefill T | dense ms | indexer+topk ms (scores only) | pattern | attention ms (auto / forced) | "
          "total ms | speedup | useful GB/s (of copy) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["prefill"]:
        if "ERROR" in r:
            print(f"| {r['T']} | ERROR {r['ERROR']} |")
            continue
        for p, forced in (("shared", "union"), ("random", "per_query")):
            print(f"| {r['T']} | {fmt(r['dense_ms'])} | {fmt(r['indexer_topk_ms'])} ({fmt(r.get('scores_only_ms'))}) "
                  f"| {p} | {fmt(r[f'{p}_attention_ms'])} / {forced} {fmt(r.get(f'{p}_{forced}_ms'))} "
                  f"| {fmt(r.get(f'{p}_total_ms'))} | {fmt(r.get(f'{p}_speedup'))} "
                  f"| {fmt(r.get(f'{p}_useful_GBps'))} ({fmt(r.get(f'{p}_gather_fraction_of_copy'))}) |")


if __name__ == "__main__":
    main()
