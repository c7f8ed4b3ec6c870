"""Prefill and decode of the Keye-VL-2.0 language model with random weights: memory and tokens/s, dense and DSA.

Usage (GPU): PYTHONPATH=. python benchmarks/model_decode.py --preset keye-vl-2.0-30b-a3b --prompt-len 4096
Usage (CPU smoke run): python benchmarks/model_decode.py --preset tiny --device cpu --dtype float32

Before timing it checks, on the same weights, that cached decode reproduces a full forward pass (greedy tokens and
logits). Baselines printed in the same run: dense attention (beside DSA) and the HBM floor of decode (bytes of the
active parameters per token over the device-to-device copy bandwidth measured here). Random weights: the indexer is
untrained, so DSA selections are unstructured (the worst case for reuse of selected keys).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from keye_agent.model import KeyeConfig, build_model, ops

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
        worst = max(worst, rel)
    limit = 5e-2 if model.lm_head.weight.dtype in (torch.bfloat16, torch.float16) else 1e-4
    if not worst < limit:
        raise SystemExit(f"cache check failed: relative logit error {worst:.3g} >= {limit}")
    return worst


@torch.inference_mode()
def run_mode(model, device, vocab: int, prompt_len: int, new_tokens: int) -> dict:
    g = torch.Generator(device="cpu").manual_seed(0)
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=g).to(device)
    cache = model.new_cache(1, prompt_len + new_tokens)
    # Warm-up on a short prompt in a separate cache (first-call costs stay out of the numbers).
    warm = model.new_cache(1, 64)
    model(prompt[:, :32], cache=warm, last_only=True)
    for _ in range(3):
        model(prompt[:, :1], cache=warm)
    del warm
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    logits = model(prompt, cache=cache, last_only=True)[:, -1]
    sync(device)
    prefill_s = time.perf_counter() - t0
    first_logits = logits.float().clone()
    steps, tokens = [], []
    for _ in range(new_tokens):
        tok = logits.argmax(-1, keepdim=True)
        tokens.append(int(tok))  # a host sync per token, as streaming needs
        t = time.perf_counter()
        logits = model(tok, cache=cache)[:, -1]
        sync(device)
        steps.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    med = statistics.median(steps)
    return dict(prefill_s=prefill_s, prefill_tok_s=prompt_len / prefill_s, decode_ms_median=med * 1e3,
                decode_tok_s=1.0 / med, decode_ms_mean=statistics.mean(steps) * 1e3, peak_bytes=peak,
                tokens=tokens, first_logits=first_logits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="keye-vl-2.0-30b-a3b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--prompt-len", type=int, default=4096)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--backend", default="reference", choices=["reference", "auto", "triton"])
    ap.add_argument("--json", default=None, help="write the figures to this file")
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

    results = {}
    for mode in ("dense", "dsa"):
        model.set_sparse(mode == "dsa")
        err = check_cache_consistency(model, device, cfg.vocab_size)
        r = run_mode(model, device, cfg.vocab_size, args.prompt_len, args.new_tokens)
        r["cache_check_rel_err"] = err
        results[mode] = r
        print(f"[{mode}] cache check rel err {err:.2e}; prefill {r['prefill_s']:.2f} s; decode median "
              f"{r['decode_ms_median']:.1f} ms/token", flush=True)
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
        out = {k: {kk: vv for kk, vv in v.items() if kk != "first_logits"} for k, v in results.items()}
        out.update(preset=args.preset, dtype=args.dtype, backend=args.backend, prompt_len=args.prompt_len,
                   new_tokens=args.new_tokens, build_s=build_s, weight_bytes=weight_bytes, cache_bytes=cache_bytes,
                   copy_bw=bw, active_bytes=active, dsa_vs_dense_rel=rel, kernels_vs_reference_rel=ref_rel, torch=torch.__version__,
                   device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   commit=os.environ.get("KEYE_COMMIT"))
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
