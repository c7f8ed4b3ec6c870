"""Vision tower throughput and long-video prefill (vision tower + language model), DSA against dense.

Usage (GPU): PYTHONPATH=. python benchmarks/vision.py --preset keye-vl-2.0-30b-a3b --frames 64,128,256,512
Usage (CPU smoke run): PYTHONPATH=. python benchmarks/vision.py --preset tiny-vl --device cpu --dtype float32 \
    --frames 4,8 --tokens-per-frame 64

Frames are synthetic (random pixels at the size smart resize gives a 16:9 frame at --tokens-per-frame, 256 by
default: 448x448 patches -> 16x16 tokens): decoding and resizing are not timed. The prompt is the Keye video layout
(``<|frame|>`` and the timestamp text before each frame's pads, 2 fps timestamps), with 3-D MRoPE positions.
Before timing it checks on the same weights: the tower's chunked pass equals one frame at a time, and DSA prefill
equals dense on a prompt of at most topk tokens (where the two are the same computation). Baseline printed in the
same run: dense attention. Random weights: the indexer is untrained, so its selections are unstructured (no
block sharing; the worst case for DSA gathers, see MODEL.md). Peak memory is torch's max_memory_allocated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from keye_agent.model import KeyeConfig, build_model, ops
from keye_agent.model.rope import mrope_positions
from keye_agent.model.vision import VisionInput, VisionTokens, build_tower, prefill, smart_resize, tower_config
from keye_agent.model.vision.prompt import MultimodalPrompt

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float, object]:
    """(median seconds, peak GiB, last result) of ``fn`` after one warm-up call."""
    out = fn()
    times = []
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return statistics.median(times), peak, out


def video_prompt(cfg: KeyeConfig, frames: int, grid: tuple[int, int, int], tok: VisionTokens, frame_id: int,
                 pixel_values: torch.Tensor) -> MultimodalPrompt:
    """Ids in the Keye video layout: text, <vs>, per frame <|frame|> + "t.t" (4 digit tokens) + pads, <ve>, text."""
    per = grid[1] * grid[2] // 4
    digits = list(range(48, 58))
    ids = [10, 11, 12, tok.vision_start]
    for i in range(frames):
        ts = f"{i / 2:.1f}"
        ids += [frame_id] + [digits[int(c)] if c.isdigit() else 46 for c in ts] + [tok.video_pad] * per
    ids += [tok.vision_end, 13, 14, 15]
    pos, delta = mrope_positions(ids, [grid] * frames, {tok.video_pad})
    inp = VisionInput("video", pixel_values, [grid] * frames, timestamps=[i / 2 for i in range(frames)])
    return MultimodalPrompt(ids, pos, delta, [inp], tok)


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="keye-vl-2.0-30b-a3b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--frames", default="64,128,256,512")
    ap.add_argument("--tokens-per-frame", type=int, default=256)
    ap.add_argument("--max-patches", type=int, default=16384, help="patches per tower pass (chunking)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-prefill", action="store_true", help="time the tower only")
    ap.add_argument("--backend", default="auto", choices=["reference", "auto", "triton"])
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    ops.set_backend(args.backend)
    cfg = KeyeConfig.from_name(args.preset)
    vcfg = tower_config(cfg)
    if vcfg is None:
        raise SystemExit(f"preset {args.preset!r} has no vision_config")
    counts = [int(x) for x in args.frames.split(",")]
    tower = build_tower(vcfg, device=device, dtype=dtype, seed=1)
    f2 = vcfg.factor**2
    h, w = smart_resize(1080, 1920, vcfg.factor, min_pixels=64 * f2, max_pixels=args.tokens_per_frame * f2)
    grid = (1, h // vcfg.patch_size, w // vcfg.patch_size)
    per_frame_patches = grid[1] * grid[2]
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch "
          f"{torch.__version__}, preset {args.preset}, {args.dtype}, random weights; frame {w}x{h} -> "
          f"{per_frame_patches} patches, {per_frame_patches // 4} tokens", flush=True)

    # Correctness before timing: chunked pass == one frame at a time.
    g = torch.Generator(device="cpu").manual_seed(0)
    probe = torch.randn(3 * per_frame_patches, 3, vcfg.patch_size, vcfg.patch_size, generator=g).to(device, dtype)
    whole = tower(probe, [grid] * 3, max_patches=args.max_patches)
    alone = torch.cat([tower(probe[i * per_frame_patches:(i + 1) * per_frame_patches], [grid]) for i in range(3)])
    tower_err = float((whole.float() - alone.float()).norm() / alone.float().norm())
    print(f"check: tower chunked vs per frame rel err {tower_err:.2e}", flush=True)
    if tower_err > (1e-5 if dtype == torch.float32 else 2e-2):
        raise SystemExit("tower check failed: not timing")

    rows = []
    for n in counts:
        pv = torch.randn(n * per_frame_patches, 3, vcfg.patch_size, vcfg.patch_size, generator=g).to(device, dtype)
        sec, peak, _ = timed(lambda pv=pv, n=n: tower(pv, [grid] * n, max_patches=args.max_patches), device,
                             args.repeats)
        rows.append({"frames": n, "tower_s": sec, "tower_fps": n / sec, "tower_peak_gib": peak})
        print(f"tower {n} frames: {sec * 1e3:.1f} ms, {n / sec:.1f} frames/s, peak {peak:.2f} GiB", flush=True)
        del pv

    if not args.skip_prefill:
        del tower
        if device.type == "cuda":
            torch.cuda.empty_cache()
        model = build_model(cfg, device=device, dtype=dtype, random_weights=True)
        tower = build_tower(vcfg, device=device, dtype=dtype, seed=1)
        tok = VisionTokens(image_pad=cfg.vocab_size - 4, video_pad=cfg.vocab_size - 3,
                           vision_start=cfg.vocab_size - 2, vision_end=cfg.vocab_size - 1)
        frame_id = cfg.vocab_size - 5
        # DSA equals dense while the prompt is not longer than topk: check it on a short video.
        topk = cfg.sa_config.topk if cfg.sa_config else 0
        few = max(1, min(4, (topk - 40) // (per_frame_patches // 4 + 5)))
        short = video_prompt(cfg, few, grid, tok, frame_id,
                             torch.randn(few * per_frame_patches, 3, vcfg.patch_size, vcfg.patch_size,
                                         generator=g).to(device, dtype))
        outs = {}
        for mode in ("dense", "dsa"):
            model.set_sparse(mode == "dsa")
            outs[mode] = prefill(model, tower, short, model.new_cache(1, len(short.input_ids) + 1)).float()
        dsa_err = float((outs["dsa"] - outs["dense"]).norm() / outs["dense"].norm())
        print(f"check: DSA vs dense prefill on {len(short.input_ids)} tokens (<= topk {topk}) rel err "
              f"{dsa_err:.2e}", flush=True)
        if dsa_err > 1e-3:
            raise SystemExit("DSA check failed: not timing")
        for row in rows:
            n = row["frames"]
            pv = torch.randn(n * per_frame_patches, 3, vcfg.patch_size, vcfg.patch_size,
                             generator=g).to(device, dtype)
            p = video_prompt(cfg, n, grid, tok, frame_id, pv)
            row["prompt_tokens"] = len(p.input_ids)
            for mode in ("dense", "dsa"):
                model.set_sparse(mode == "dsa")

                def run(p=p):
                    return prefill(model, tower, p, model.new_cache(1, len(p.input_ids) + 1),
                                   max_patches=args.max_patches)

                try:
                    sec, peak, _ = timed(run, device, max(1, args.repeats - 2))
                except torch.OutOfMemoryError:
                    sec, peak = float("nan"), float("nan")
                    torch.cuda.empty_cache()
                row[f"{mode}_prefill_s"], row[f"{mode}_peak_gib"] = sec, peak
                print(f"prefill {n} frames ({len(p.input_ids)} tokens) {mode}: {sec:.3f} s, peak {peak:.2f} GiB",
                      flush=True)
            del pv, p

    print()
    head = f"{'frames':>6} {'tower ms':>9} {'frames/s':>9}"
    if not args.skip_prefill:
        head += f" {'tokens':>7} {'dense s':>8} {'DSA s':>8} {'dense/DSA':>9} {'dense GiB':>9} {'DSA GiB':>8}"
    print(head)
    for r in rows:
        line = f"{r['frames']:>6} {r['tower_s'] * 1e3:>9.1f} {r['tower_fps']:>9.1f}"
        if not args.skip_prefill:
            ratio = r["dense_prefill_s"] / r["dsa_prefill_s"]
            line += (f" {r['prompt_tokens']:>7} {r['dense_prefill_s']:>8.3f} {r['dsa_prefill_s']:>8.3f} "
                     f"{ratio:>9.2f} {r['dense_peak_gib']:>9.2f} {r['dsa_peak_gib']:>8.2f}")
        print(line)
    print("(baseline: dense attention, same run; random weights, untrained indexer: unstructured selections)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "dtype": args.dtype, "device": str(device), "grid": grid,
                       "tower_check": tower_err, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
