"""Prefill and decode of the Keye-VL-2.0 language model with random weights: memory and tokens/s, dense and DSA.

Usage (GPU): PYTHONPATH=. python benchmarks/model_decode.py --preset keye-vl-2.0-30b-a3b --prompt-len 4096
Usage (CPU smoke run): python benchmarks/model_decode.py --preset tiny --device cpu --dtype float32
With --compare-moe: first checks the sync-free MoE paths against the original per-expert loop on this device (one
layer's weights, bf16, relative error), then times every mode with the old loop ("old") and the new paths ("new")
in the same run, and compares their logits and greedy tokens.

Before timing it checks, on the same weights, that cached decode reproduces a full forward pass (greedy tokens and
logits). Baselines printed in the same run: dense attention (beside DSA) and the HBM floor of decode (bytes of the
active parameters per token over the device-to-device copy bandwidth measured here). Random weights: the indexer is
untrained, so DSA selections are unstructured (the worst case for reuse of selected keys).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import statistics
import time

import torch

from keye_agent.model import KeyeConfig, build_model, moe, ops
from keye_agent.model.graph import DecodeGraph

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device) -> float | None:
    """Device-to-device copy bandwidth in bytes/s (read + write), median of 10 copies of 2 GiB."""
    if device.type != "cuda":
        return None
    src = torch.empty(1 << 30, dtype=torch.float16, device=device).normal_()
    dst = torch.empty_like(src)
    times = []
    for i in range(13):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        if i >= 3:
            times.append(a.elapsed_time(b) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * (1 << 31) / statistics.median(times)


def active_param_bytes(cfg: KeyeConfig, model: torch.nn.Module) -> int:
    """Bytes one decode token must read: all weights except the unused experts and the embedding table."""
    elt = next(model.parameters()).element_size()
    total = sum(p.numel() for p in model.parameters())
    experts = cfg.num_hidden_layers * cfg.num_experts * 3 * cfg.hidden_size * cfg.moe_intermediate_size
    used = experts * cfg.num_experts_per_tok // cfg.num_experts
    return (total - experts + used - cfg.vocab_size * cfg.hidden_size) * elt


@torch.inference_mode()
def check_cache_consistency(model, device, vocab: int, n_prompt: int = 48, n_new: int = 4) -> float:
    """Greedy decode with the cache vs full forwards; returns the worst relative logit error (raises on mismatch)."""
    g = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(0, vocab, (1, n_prompt), generator=g).to(device)
    cache = model.new_cache(1, n_prompt + n_new)
    logits = model(ids, cache=cache, last_only=True)[:, -1]
    seq = ids
    worst = 0.0
    for _ in range(n_new):
        tok = logits.argmax(-1, keepdim=True)
        seq = torch.cat([seq, tok], dim=1)
        full = model(seq, last_only=True)[:, -1]
        logits = model(tok, cache=cache)[:, -1]
        rel = float((logits - full).norm() / full.norm())
        if not math.isfinite(rel):
            raise SystemExit(f"cache check failed: relative logit error {rel} (non-finite logits)")
        worst = max(worst, rel)
    limit = 5e-2 if model.lm_head.weight.dtype in (torch.bfloat16, torch.float16) else 1e-4
    if not worst < limit:
        raise SystemExit(f"cache check failed: relative logit error {worst:.3g} >= {limit}")
    return worst


@torch.inference_mode()
def run_mode(model, device, vocab: int, prompt_len: int, new_tokens: int,
             moe_impls: tuple[str, str] = ("auto", "auto"), graph: bool = False) -> dict:
    """Prefill then greedy decode; ``moe_impls`` = (prefill, decode) MoE implementations (``moe.set_moe_impl``).

    With ``graph`` the decode steps replay a captured ``DecodeGraph`` (capture time reported apart).
    """
    moe.set_moe_impl(moe_impls[1])
    g = torch.Generator(device="cpu").manual_seed(0)
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=g).to(device)
    cache = model.new_cache(1, prompt_len + new_tokens)
    # Warm-up on a short prompt in a separate cache (first-call costs stay out of the numbers).
    warm = model.new_cache(1, 64)
    moe.set_moe_impl(moe_impls[0])
    model(prompt[:, :32], cache=warm, last_only=True)
    moe.set_moe_impl(moe_impls[1])
    for _ in range(3):
        model(prompt[:, :1], cache=warm)
    del warm
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    moe.set_moe_impl(moe_impls[0])
    t0 = time.perf_counter()
    logits = model(prompt, cache=cache, last_only=True)[:, -1]
    sync(device)
    prefill_s = time.perf_counter() - t0
    moe.set_moe_impl(moe_impls[1])
    first_logits = logits.float().clone()
    capture_s, step_fn = None, None
    if graph:
        t0 = time.perf_counter()
        step_fn = DecodeGraph(model, cache)
        sync(device)
        capture_s = time.perf_counter() - t0
    steps, tokens, step_logits = [], [], None
    for _ in range(new_tokens):
        tok = logits.argmax(-1, keepdim=True)
        tokens.append(int(tok))  # a host sync per token, as streaming needs
        t = time.perf_counter()
        logits = (model(tok, cache=cache) if step_fn is None else step_fn(tok))[:, -1]
        sync(device)
        steps.append(time.perf_counter() - t)
        if step_logits is None:
            step_logits = logits.float().clone()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    moe.set_moe_impl("auto")
    med = statistics.median(steps)
    return dict(prefill_s=prefill_s, prefill_tok_s=prompt_len / prefill_s, decode_ms_median=med * 1e3,
                decode_tok_s=1.0 / med, decode_ms_mean=statistics.mean(steps) * 1e3, peak_bytes=peak,
                tokens=tokens, first_logits=first_logits, step_logits=step_logits, capture_s=capture_s)


@torch.inference_mode()
def check_moe_paths(model, device, sizes=(1, 8, 512, 4096)) -> tuple[dict, str | None]:
    """New MoE paths vs the per-expert loop on layer 0's weights at several token counts; also times each (ms).

    Returns ({(impl, n): (rel_err, ms)}, error text of the grouped path or None). Raises on a relative error > 2e-2.
    """
    mlp = model.model.layers[0].mlp
    gate_up, down = mlp.experts.gate_up_proj, mlp.experts.down_proj
    g = torch.Generator(device=device).manual_seed(5)
    out, grouped_err = {}, None
    for n in sizes:
        x = torch.randn(n, gate_up.shape[1], device=device, dtype=gate_up.dtype, generator=g)
        probs = torch.softmax(mlp.gate(x).float(), -1)
        w, chosen = torch.topk(probs, mlp.top_k, -1)
        w = w / w.sum(-1, keepdim=True)
        impls = {"loop": moe.experts_loop, "grouped": moe.experts_grouped}
        if n * mlp.top_k <= 256:
            impls["gather"] = moe.experts_gather
        ref = None
        for name, fn in impls.items():
            if name == "grouped" and grouped_err is not None:
                continue
            try:
                got = fn(x, chosen, w, gate_up, down)
            except Exception as e:  # noqa: BLE001 - report why the grouped GEMM is unusable here, then go on
                grouped_err = f"{type(e).__name__}: {e}"
                print(f"MoE check: {name} failed at N={n}: {grouped_err}", flush=True)
                continue
            ref = got.float() if ref is None else ref
            rel = float((got.float() - ref).norm() / ref.norm())
            times = []
            for i in range(13):
                sync(device)
                t0 = time.perf_counter()
                fn(x, chosen, w, gate_up, down)
                sync(device)
                if i >= 3:
                    times.append((time.perf_counter() - t0) * 1e3)
            out[(name, n)] = (rel, statistics.median(times))
            print(f"MoE check N={n:5d} {name:8s}: rel err vs loop {rel:.2e}, {statistics.median(times):.3f} ms "
                  f"(one layer, incl. launch)", flush=True)
            if not rel < 2e-2:
                raise SystemExit(f"MoE check failed: {name} vs loop at N={n}: relative error {rel:.3g}")
    return out, grouped_err


@torch.inference_mode()
def profile_graph_decode(model, device, vocab: int, prompt_len: int, steps: int = 20) -> None:
    """Graph decode per MoE path (grouped, gather) and mode: median ms/token, then the top kernels of 5 replays."""
    g = torch.Generator(device="cpu").manual_seed(0)
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=g).to(device)
    for mode in ("dense", "dsa"):
        model.set_sparse(mode == "dsa")
        for impl in ("grouped", "gather"):
            moe.set_moe_impl("auto")
            cache = model.new_cache(1, prompt_len + steps + 8)
            tok = model(prompt, cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)
            moe.set_moe_impl(impl)  # the decode step's MoE path (captured into the graph)
            step = DecodeGraph(model, cache)
            times = []
            for _ in range(steps):
                sync(device)
                t = time.perf_counter()
                tok = step(tok)[:, -1].argmax(-1, keepdim=True)
                sync(device)
                times.append((time.perf_counter() - t) * 1e3)
            print(f"[profile {mode}] graph decode with MoE {impl}: median {statistics.median(times):.2f} ms/token",
                  flush=True)
            if impl == "grouped" and device.type == "cuda":
                from torch.profiler import ProfilerActivity, profile
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(5):
                        tok = step(tok)[:, -1].argmax(-1, keepdim=True)
                    sync(device)
                print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70),
                      flush=True)
            del step, cache
    moe.set_moe_impl("auto")


# -- the fused decode step against the old one (issue 15) ---------------------------------------------------------
def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm()) if torch.isfinite(a).all() else float("inf")


@torch.inference_mode()
def check_steps(model, device, vocab: int, prompt_len: int, n_steps: int = 8) -> dict:
    """Old and new steps vs the eager reference (ops "reference", per-expert MoE loop), teacher-forced on the
    reference's greedy tokens after one prefill: worst relative logit error and argmax agreement, per mode."""
    g = torch.Generator(device="cpu").manual_seed(3)
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=g).to(device)
    out = {}
    for mode in ("dense", "dsa"):
        model.set_sparse(mode == "dsa")
        ref_cache = model.new_cache(1, prompt_len + n_steps + 1)
        logits = model(prompt, cache=ref_cache, last_only=True)[:, -1]
        caches = {name: model.new_cache(1, prompt_len + n_steps + 1) for name in ("old", "new")}
        steps = {}
        print(f"[check {mode}] prefilled {prompt_len} tokens; capturing the steps", flush=True)
        for name, c in caches.items():
            c.k.copy_(ref_cache.k), c.v.copy_(ref_cache.v)
            if c.index_k is not None:
                c.index_k.copy_(ref_cache.index_k)
            c.length, c.index_length = ref_cache.length, ref_cache.index_length
            steps[name] = DecodeGraph(model, c, fused=name == "new")
        backend, impl = ops.get_backend(), moe.get_moe_impl()
        worst = {"old": 0.0, "new": 0.0}
        same = {"old": 0, "new": 0}
        for _ in range(n_steps):
            tok = logits.argmax(-1, keepdim=True)
            got = {name: st(tok)[:, -1].float().clone() for name, st in steps.items()}
            ops.set_backend("reference"), moe.set_moe_impl("loop")
            logits = model(tok, cache=ref_cache)[:, -1]
            ops.set_backend(backend), moe.set_moe_impl(impl)
            for name, lg in got.items():
                worst[name] = max(worst[name], _rel(lg, logits))
                same[name] += int(lg.argmax(-1) == logits.argmax(-1))
        for name in ("old", "new"):
            ok = worst[name] < 5e-2
            out[(mode, name)] = dict(rel=worst[name], same=same[name], steps=n_steps, ok=ok)
            print(f"[check {mode} {name} step] vs eager reference over {n_steps} teacher-forced steps after a "
                  f"{prompt_len}-token prefill: worst relative logit error {worst[name]:.2e}, argmax equal "
                  f"{same[name]}/{n_steps} -> {'ok' if ok else 'FAILED'}", flush=True)
        del steps, caches, ref_cache
    return out


@torch.inference_mode()
def check_fused_moe(model, device, sizes=(1, 2, 4, 8)) -> bool:
    """The fused MoE decode vs the per-expert loop on layer 0's weights, on the same routing: the router logits of
    add_rmsnorm against ``mlp.gate``, then the experts (moe_decode) against ``moe.experts_loop`` fed the routing of
    those logits. (The whole SparseMoe cannot be the reference: it rounds the logits to bf16, so near-tied 8th and
    9th experts swap between the two.)"""
    from keye_agent.model.kernels.decode.moe import moe_decode
    from keye_agent.model.kernels.decode.norms import add_rmsnorm

    layer = model.model.layers[0]
    mlp = layer.mlp
    cfg = model.config
    g = torch.Generator(device=device).manual_seed(11)
    ok = True
    for n in sizes:
        x = torch.randn(n, cfg.hidden_size, device=device, generator=g).to(mlp.gate.weight.dtype)
        h = torch.full_like(x, float("nan"))
        logits = torch.full((n, cfg.num_experts), float("nan"), device=device)
        partial = torch.full((mlp.top_k, n, cfg.hidden_size), float("nan"), device=device)
        add_rmsnorm(x, None, layer.post_attention_layernorm.weight, cfg.rms_norm_eps, h, router=mlp.gate.weight,
                    logits=logits)
        moe_decode(h, logits, mlp.experts.gate_up_proj, mlp.experts.down_proj, mlp.top_k, mlp.norm_topk, partial)
        h_ref = layer.post_attention_layernorm(x)
        rel_h = _rel(h.float(), h_ref.float())
        rel_lg = _rel(logits, (h_ref.float() @ mlp.gate.weight.float().T))
        w, chosen = torch.topk(torch.softmax(logits, -1), mlp.top_k, -1)
        w = w / w.sum(-1, keepdim=True) if mlp.norm_topk else w
        want = moe.experts_loop(h, chosen, w, mlp.experts.gate_up_proj, mlp.experts.down_proj)
        rel = _rel(partial.sum(0), want.float())
        ok &= rel < 2e-2 and rel_h < 1e-2 and rel_lg < 1e-2
        print(f"[check fused MoE] N={n}: norm {rel_h:.2e}, router logits {rel_lg:.2e}, experts vs the per-expert "
              f"loop {rel:.2e} (relative errors)", flush=True)
    return ok


def _graph_time(fn, reps: int = 20) -> float:
    """Median us of one replay of a graph capturing fn()."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    return statistics.median(times)


@torch.inference_mode()
def time_moe(model, device, n_layers: int = 16, sweep: bool = False) -> dict:
    """us per layer of the MoE decode for one token (graph over n_layers layers' weights, so L2 holds none):
    fused (router + two kernels) vs the grouped-GEMM path of the old step."""
    from keye_agent.model.kernels.decode import moe as kmoe
    from keye_agent.model.kernels.decode.norms import add_rmsnorm

    cfg = model.config
    layers = model.model.layers[:n_layers]
    x = torch.randn(1, cfg.hidden_size, device=device).to(model.lm_head.weight.dtype)
    h = torch.empty_like(x)
    logits = torch.empty(1, cfg.num_experts, device=device)
    partial = torch.empty(cfg.num_experts_per_tok, 1, cfg.hidden_size, device=device)

    def fused():
        for layer in layers:
            add_rmsnorm(x, None, layer.post_attention_layernorm.weight, cfg.rms_norm_eps, h,
                        router=layer.mlp.gate.weight, logits=logits)
            kmoe.moe_decode(h, logits, layer.mlp.experts.gate_up_proj, layer.mlp.experts.down_proj,
                            layer.mlp.top_k, layer.mlp.norm_topk, partial)

    def grouped():
        moe.set_moe_impl("grouped")
        for layer in layers:
            layer.mlp(layer.post_attention_layernorm(x[None]))
        moe.set_moe_impl("auto")

    out = {"fused": _graph_time(fused) / n_layers, "grouped": _graph_time(grouped) / n_layers}
    if sweep:
        base = dict(kmoe.MOE_DECODE_CONFIG)
        for bi, bk, gw, bh, bj, dw in [(16, 128, 4, 64, 128, 4), (32, 256, 8, 64, 128, 4), (64, 64, 4, 64, 64, 4),
                                       (32, 128, 4, 128, 64, 4), (32, 128, 4, 32, 256, 4), (16, 256, 4, 64, 256, 8)]:
            kmoe.MOE_DECODE_CONFIG.update(block_i=bi, block_k=bk, gu_warps=gw, block_h=bh, block_j=bj, down_warps=dw)
            out[f"fused bi{bi} bk{bk} w{gw} / bh{bh} bj{bj} w{dw}"] = _graph_time(fused) / n_layers
        kmoe.MOE_DECODE_CONFIG.update(base)
    for k, v in out.items():
        print(f"[MoE decode, one token] {k}: {v:.1f} us/layer", flush=True)
    return out


def fill_cache(cache, length: int, seed: int) -> None:
    """Random K/V/index keys in the first ``length`` slots (a stand-in for a prefill: the step's cost depends on
    the length, not on the values; random index keys give unstructured DSA selections)."""
    g = torch.Generator(device=cache.k.device).manual_seed(seed)
    for t in (cache.k, cache.v) + ((cache.index_k,) if cache.index_k is not None else ()):
        for i in range(t.shape[0]):
            t[i, :, :length].normal_(generator=g)
    cache.length = cache.index_length = length


@torch.inference_mode()
def count_kernels(model, cache, fused: bool) -> int:
    """Kernels (and memcpy/memset) one eager run of the step launches: the graph replays exactly these."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    step = DecodeGraph(model, cache, use_graph=False, fused=fused)
    tok = torch.zeros(1, 1, dtype=torch.long, device=cache.k.device)
    step(tok)
    cache.truncate(cache.length - 1)
    sync(cache.k.device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step(tok)
        sync(cache.k.device)
    cache.truncate(cache.length - 1)
    return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)


@torch.inference_mode()
def time_step(model, cache, fused: bool, steps: int = 24) -> float:
    """Median ms of one captured step (events around each call, synchronised)."""
    step = DecodeGraph(model, cache, fused=fused)
    base = cache.length
    tok = torch.ones(1, 1, dtype=torch.long, device=cache.k.device)
    times = []
    for i in range(steps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step(tok)
        b.record()
        b.synchronize()
        if i >= 2:
            times.append(a.elapsed_time(b))
    cache.truncate(base)
    del step
    return statistics.median(times)


@torch.inference_mode()
def profile_step(model, cache, label: str, reps: int = 3) -> None:
    """The new step's kernels over ``reps`` graph replays (torch profiler), by total GPU time."""
    from torch.profiler import ProfilerActivity, profile

    step = DecodeGraph(model, cache, fused=True)
    base = cache.length
    tok = torch.ones(1, 1, dtype=torch.long, device=cache.k.device)
    step(tok)
    sync(cache.k.device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step(tok)
        sync(cache.k.device)
    cache.truncate(base)
    print(f"[profile {label}] new step, {reps} replays", flush=True)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=16, max_name_column_width=60), flush=True)


def sweep_step(model, cache, mode: str, ctx: int) -> None:
    """The new step's time under other attention launch settings (same cache)."""
    from keye_agent.model.kernels.decode import attention as kattn
    from keye_agent.model.kernels.decode import dsa as kdsa

    conf = kdsa.DSA_DECODE_CONFIG if mode == "dsa" else kattn.DECODE_ATTN_CONFIG
    variants = ([dict(nprog=n, topk_split=t, block_s=b) for n, t, b in
                 [(128, 64, 128), (512, 64, 128), (256, 32, 128), (256, 128, 64), (512, 128, 64)]]
                if mode == "dsa" else
                [dict(nsplit=n, block_n=b) for n, b in [(32, 64), (128, 64), (64, 32), (64, 128), (128, 32)]])
    base = dict(conf)
    for v in variants:
        conf.update(v)
        print(f"[sweep {ctx} {mode}] {v}: {time_step(model, cache, fused=True):.3f} ms/token", flush=True)
    conf.clear()
    conf.update(base)


def step_floor_bytes(cfg, active: int, ctx: int, sparse: bool, elt: int = 2) -> int:
    """Bytes one step must read: active weights, plus the KV of every filled slot (dense) or the index keys of
    every slot and the KV of the top-k slots (DSA)."""
    L, kv = cfg.num_hidden_layers, cfg.num_key_value_heads * cfg.head_dim * 2 * elt
    if not sparse:
        return active + L * ctx * kv
    sa = cfg.sa_config
    return active + L * (ctx * sa.indexer_head_dim * elt + min(sa.topk, ctx) * kv)


def decode_table(model, device, cfg, bw: float, active: int, contexts: list[int], check_len: int,
                 moe_sweep: bool, json_path: str | None, profile_at: tuple[int, ...] = (),
                 step_sweep: tuple[int, ...] = ()) -> None:
    checks = check_steps(model, device, cfg.vocab_size, check_len)
    moe_ok = check_fused_moe(model, device)
    moe_times = time_moe(model, device, sweep=moe_sweep) if moe_ok else {}
    rows = []
    for ctx in contexts:
        ctx = min(ctx, cfg.max_position_embeddings - 32)  # room for the timed steps
        cache = model.new_cache(1, ctx + 32)
        fill_cache(cache, ctx, seed=ctx)
        for mode in ("dense", "dsa"):
            model.set_sparse(mode == "dsa")
            row = dict(ctx=ctx, mode=mode, floor_ms=step_floor_bytes(cfg, active, ctx, mode == "dsa") / bw * 1e3)
            for name in ("old", "new"):
                if not checks[(mode, name)]["ok"] or (name == "new" and not moe_ok):
                    row[name] = None
                    continue
                try:
                    row[name] = time_step(model, cache, fused=name == "new")
                    row[name + "_kernels"] = count_kernels(model, cache, fused=name == "new")
                except torch.OutOfMemoryError as e:
                    print(f"[{ctx} {mode} {name}] out of memory: {e}", flush=True)
                    row[name] = "OOM"
                    torch.cuda.empty_cache()
            rows.append(row)
            print(f"[{ctx} {mode}] {row}", flush=True)
            if ctx in profile_at and isinstance(row.get("new"), float):
                profile_step(model, cache, f"{ctx} {mode}")
            if ctx in step_sweep and isinstance(row.get("new"), float):
                sweep_step(model, cache, mode, ctx)
        del cache
        torch.cuda.empty_cache()
    L = cfg.num_hidden_layers
    print(f"\nDecode step, batch 1, {device_name(device)}, weights' HBM floor {active / bw * 1e3:.2f} ms at "
          f"{bw / 1e12:.2f} TB/s; cache filled with random K/V/index keys to the context (values do not change "
          "the step's cost; DSA selections unstructured)")
    print("| context | mode | old step ms/token | new step ms/token | new tok/s | speedup | kernels/step old -> new "
          "(per layer) | floor ms (weights + KV/index bytes) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        def fmt(v):
            return "REFUSED (check failed)" if v is None else (v if isinstance(v, str) else f"{v:.2f}")
        new, old = r.get("new"), r.get("old")
        num = isinstance(new, float)
        sp = f"{old / new:.2f}x" if num and isinstance(old, float) else "-"
        kn = (f"{r.get('old_kernels', '-')} -> {r.get('new_kernels', '-')} "
              f"({r['new_kernels'] / L:.1f})") if "new_kernels" in r else "-"
        print(f"| {r['ctx']} | {r['mode']} | {fmt(old)} | {fmt(new)} | {1e3 / new:.0f} | {sp} | {kn} | "
              f"{r['floor_ms']:.2f} |" if num else
              f"| {r['ctx']} | {r['mode']} | {fmt(old)} | {fmt(new)} | - | {sp} | {kn} | {r['floor_ms']:.2f} |")
    by = {(r["ctx"], r["mode"]): r.get("new") for r in rows}
    for ctx in sorted({r["ctx"] for r in rows}):
        d, s = by.get((ctx, "dense")), by.get((ctx, "dsa"))
        if isinstance(d, float) and isinstance(s, float):
            print(f"{ctx // 1024}K, new step: DSA takes {s / d:.2f}x the time of dense (dense / DSA = {d / s:.2f}x)")
    if moe_times:
        print(f"fused MoE decode: {moe_times['fused']:.1f} us/layer (grouped GEMM path {moe_times['grouped']:.1f})")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(rows=rows, checks={f"{k[0]} {k[1]}": v for k, v in checks.items()}, moe_ok=moe_ok,
                           moe_us=moe_times, copy_bw=bw, active_bytes=active, device=device_name(device),
                           torch=torch.__version__, commit=os.environ.get("KEYE_COMMIT")), f, indent=1)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main() -> None:
    faulthandler.enable()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="keye-vl-2.0-30b-a3b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--prompt-len", type=int, default=4096)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--backend", default="reference", choices=["reference", "auto", "triton"])
    ap.add_argument("--json", default=None, help="write the figures to this file")
    ap.add_argument("--compare-moe", action="store_true",
                    help="check the new MoE paths against the per-expert loop, then time old and new (CUDA)")
    ap.add_argument("--profile-graph", action="store_true",
                    help="only time the graph decode step per MoE path and list its top kernels, then exit")
    ap.add_argument("--legacy", action="store_true",
                    help="the earlier prefill + eager/graph decode comparison instead of the decode-step table")
    ap.add_argument("--contexts", default="4096,32768,131072,262144", help="decode-step table: context lengths")
    ap.add_argument("--check-len", type=int, default=4096, help="prefill length of the correctness checks")
    ap.add_argument("--moe-sweep", action="store_true", help="also time fused-MoE launch-setting variants")
    ap.add_argument("--profile-at", default="", help="contexts at which to list the new step's kernels")
    ap.add_argument("--step-sweep", default="", help="contexts at which to time attention launch variants")
    args = ap.parse_args()
    device = torch.device(args.device)
    ops.set_backend(args.backend)
    cfg = KeyeConfig.from_name(args.preset)

    bw = copy_bandwidth(device)
    t0 = time.perf_counter()
    model = build_model(cfg, device=device, dtype=DTYPES[args.dtype], random_weights=True)
    sync(device)
    build_s = time.perf_counter() - t0
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    active = active_param_bytes(cfg, model)
    cache_bytes = model.new_cache(1, args.prompt_len + args.new_tokens).nbytes
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch "
          f"{torch.__version__}, backend {args.backend}, preset {args.preset} ({cfg.num_parameters() / 1e9:.2f} B "
          f"params, {args.dtype}), built with random weights in {build_s:.1f} s")
    print(f"weights {weight_bytes / 2**30:.2f} GiB, cache for {args.prompt_len + args.new_tokens} tokens "
          f"{cache_bytes / 2**20:.1f} MiB, active bytes per decode token {active / 1e9:.2f} GB")

    if args.profile_graph:
        profile_graph_decode(model, device, cfg.vocab_size, args.prompt_len)
        return
    if not (args.legacy or args.compare_moe):
        decode_table(model, device, cfg, bw, active, [int(c) for c in args.contexts.split(",")], args.check_len,
                     args.moe_sweep, args.json, tuple(int(c) for c in args.profile_at.split(",") if c),
                     tuple(int(c) for c in args.step_sweep.split(",") if c))
        return
    variants = {"": ("auto", "auto")}
    moe_check = None
    if args.compare_moe:
        moe_check, grouped_err = check_moe_paths(model, device)
        # Without a usable grouped GEMM the new path is the loop for prefill and the gathered bmm for decode.
        variants = {"old ": ("loop", "loop"), "new ": ("grouped", "grouped") if grouped_err is None
                    else ("loop", "gather")}
        if grouped_err is None and device.type == "cuda":
            variants["new+graph "] = ("grouped", "grouped")
        print(f"MoE variants (prefill, decode): {variants}", flush=True)
    results = {}
    for label, impls in variants.items():
        for mode in ("dense", "dsa"):
            model.set_sparse(mode == "dsa")
            moe.set_moe_impl(impls[1])
            graph = label.startswith("new+graph")
            try:
                err = check_cache_consistency(model, device, cfg.vocab_size)
                r = run_mode(model, device, cfg.vocab_size, args.prompt_len, args.new_tokens, impls, graph)
            except Exception as e:  # noqa: BLE001 - a failed graph capture must not lose the other figures
                if not graph:
                    raise
                print(f"[{label}{mode}] failed: {type(e).__name__}: {e}", flush=True)
                continue
            r["cache_check_rel_err"] = err
            results[label + mode] = r
            print(f"[{label}{mode}] cache check rel err {err:.2e}; prefill {r['prefill_s']:.2f} s; decode median "
                  f"{r['decode_ms_median']:.1f} ms/token", flush=True)
    if args.compare_moe:
        for mode in ("dense", "dsa"):
            o, n = results["old " + mode], results["new " + mode]
            rel_on = float((n["first_logits"] - o["first_logits"]).norm() / o["first_logits"].norm())
            same_on = sum(a == b for a, b in zip(o["tokens"], n["tokens"], strict=True))
            print(f"[{mode}] new vs old MoE: last-prompt-token relative logit difference {rel_on:.2e}; greedy tokens "
                  f"equal at {same_on}/{args.new_tokens} steps; prefill {o['prefill_s'] / n['prefill_s']:.1f}x, "
                  f"decode {o['decode_ms_median'] / n['decode_ms_median']:.1f}x faster")
            gr = results.get("new+graph " + mode)
            if gr is not None:
                rel_g = float((gr["step_logits"] - n["step_logits"]).norm() / n["step_logits"].norm())
                same_g = sum(a == b for a, b in zip(n["tokens"], gr["tokens"], strict=True))
                print(f"[{mode}] graph vs eager (new MoE): first decode step relative logit difference {rel_g:.2e}; "
                      f"greedy tokens equal at {same_g}/{args.new_tokens}; capture {gr['capture_s']:.2f} s; decode "
                      f"{o['decode_ms_median'] / gr['decode_ms_median']:.1f}x faster than old")
        results["dense"], results["dsa"] = results["new dense"], results["new dsa"]
    ref_rel = None
    if args.backend != "reference":
        # The kernels must compute what the reference computes: same prompt, DSA, reference ops.
        ops.set_backend("reference")
        ref = run_mode(model, device, cfg.vocab_size, args.prompt_len, 1)["first_logits"]
        ops.set_backend(args.backend)
        got = results["dsa"]["first_logits"]
        ref_rel = float((got - ref).norm() / ref.norm())
        print(f"DSA with backend {args.backend} vs reference ops, last prompt token: relative logit difference "
              f"{ref_rel:.2e}")
    d, s = results["dense"], results["dsa"]
    rel = float((s["first_logits"] - d["first_logits"]).norm() / d["first_logits"].norm())
    same = sum(a == b for a, b in zip(d["tokens"], s["tokens"], strict=True))
    floor_ms = active / bw * 1e3 if bw else None

    print()
    print(f"| mode | prefill {args.prompt_len} tok (s) | prefill tok/s | decode ms/token (median) | decode tok/s "
          f"| peak GPU memory (GiB) |")
    print("|---|---|---|---|---|---|")
    for mode, r in results.items():
        if args.compare_moe and mode in ("dense", "dsa"):
            continue
        peak = f"{r['peak_bytes'] / 2**30:.1f}" if r["peak_bytes"] else "-"
        print(f"| {mode} | {r['prefill_s']:.2f} | {r['prefill_tok_s']:.0f} | {r['decode_ms_median']:.1f} | "
              f"{r['decode_tok_s']:.1f} | {peak} |")
    if floor_ms:
        print(f"| HBM floor of decode (active bytes / {bw / 1e12:.2f} TB/s copy) | | | {floor_ms:.2f} | "
              f"{1e3 / floor_ms:.0f} | |")
    print(f"\nDSA vs dense at the last prompt token: relative logit difference {rel:.3f} (prompt {args.prompt_len} "
          f"tokens, top-k {cfg.sa_config.topk if cfg.sa_config else '-'}); greedy tokens equal at "
          f"{same}/{args.new_tokens} steps")
    if args.json:
        out = {k: {kk: vv for kk, vv in v.items() if kk not in ("first_logits", "step_logits")}
               for k, v in results.items()}
        if moe_check is not None:
            out["moe_check"] = {f"{k[0]} N={k[1]}": v for k, v in moe_check.items()}
        out.update(preset=args.preset, dtype=args.dtype, backend=args.backend, prompt_len=args.prompt_len,
                   new_tokens=args.new_tokens, build_s=build_s, weight_bytes=weight_bytes, cache_bytes=cache_bytes,
                   copy_bw=bw, active_bytes=active, dsa_vs_dense_rel=rel, kernels_vs_reference_rel=ref_rel, torch=torch.__version__,
                   device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   commit=os.environ.get("KEYE_COMMIT"))
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
