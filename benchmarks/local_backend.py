"""Local transformers backend on the demo model (SmolLM2-135M-Instruct, CPU): decode speed with and without
grammar-constrained tool calls, and the per-token cost of the grammar mask on tokens generated inside tool calls.

    .venv/bin/python benchmarks/local_backend.py [--runs 5] [--threads N]

Each configuration runs once as warm-up, then ``--runs`` times round-robin; medians are reported. Prefill (the first step) is
left out of tokens/s. Correctness first: every constrained reply must hold a call that validates, or the script
stops before printing a figure. The mask cost is measured per step inside the same decode loop (xgrammar's bitmask
fill + apply), against the rest of that step (forward pass and sampling).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from jsonschema import Draft202012Validator

from keye_agent.backends.transformers import TransformersBackend
from keye_agent.cli.demo_model import ensure_demo_model
from keye_agent.types import GenerationSettings, Message

TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string", "maxLength": 40},
                                  "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                                  "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "units", "days"], "additionalProperties": False}}}
ASK = [Message.system("You are a helpful assistant. Use the tools."),
       Message.user("What will the weather be in Paris over the next three days, in celsius?")]


def inside_call_mask(b: TransformersBackend, ids: list[int]) -> list[bool]:
    """For each generated token: does it lie inside a <tool_call>...</tool_call> block (closing tag included)?"""
    flags: list[bool] = []
    prev_len = 0
    for i in range(len(ids)):
        text = b.tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
        start = text.rfind("<tool_call>")
        if start < 0:
            flags.append(False)
        else:
            close = text.find("</tool_call>", start)
            # still open, or its closing tag was finished by this very token
            flags.append(close < 0 or close + len("</tool_call>") > prev_len)
        prev_len = len(text)
    return flags


def run_once(b: TransformersBackend, constrained: bool, tool_choice: str, max_tokens: int) -> dict[str, float]:
    b.constrained = constrained
    turn = b.generate(ASK, [TOOL], GenerationSettings(max_tokens=max_tokens, tool_choice=tool_choice))
    steps = b.last_step_times
    decode = steps[1:]  # step 0 is the prefill
    out = {"tokens": len(decode), "tok_s": len(decode) / sum(decode) if decode else 0.0, "calls": len(turn.tool_calls),
           "valid": all(not list(Draft202012Validator(TOOL["function"]["parameters"]).iter_errors(c.arguments))
                        for c in turn.tool_calls)}
    dec = b.last_decoder if constrained else None
    if dec is not None:
        inside = inside_call_mask(b, b.last_token_ids)
        rows = [(m, s) for m, s, k in zip(dec.step_times[1:], steps[1:], inside[1:], strict=True) if k]
        if rows:
            out["mask_ms"] = 1e3 * statistics.mean(m for m, _ in rows)
            out["rest_ms"] = 1e3 * statistics.mean(s - m for m, s in rows)
            out["inside_tokens"] = len(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    b = TransformersBackend(ensure_demo_model(quiet=True), parallel_tool_calls=False)

    configs = [("unconstrained (baseline)", False, "auto"), ("constrained, auto", True, "auto"),
               ("constrained, required", True, "required")]
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in configs}
    for _, constrained, choice in configs:
        run_once(b, constrained, choice, args.max_tokens)  # warm-up: grammar compile, first-call allocations
    for _ in range(args.runs):  # round-robin, so that load from other processes hits every configuration alike
        for label, constrained, choice in configs:
            results[label].append(run_once(b, constrained, choice, args.max_tokens))
    for r in results["constrained, required"]:
        if not (r["calls"] >= 1 and r["valid"]):
            raise SystemExit(f"constrained 'required' reply without a valid call: {r}; not timing a broken path")

    load = os.getloadavg()
    print(f"\ndevice: {platform.processor() or platform.machine()} CPU, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {load[0]:.1f} (other processes share these cores)")
    print(f"model: {b.name}, greedy, max_tokens {args.max_tokens}, {args.runs} runs after one warm-up, medians\n")
    base = statistics.median(r["tok_s"] for r in results["unconstrained (baseline)"])
    print(f"{'configuration':<26} {'tokens':>7} {'tok/s':>7} {'vs base':>8} {'calls':>6} "
          f"{'mask ms/tok':>12} {'rest ms/tok':>12} {'mask cost':>10}")
    for label, rows in results.items():
        tok_s = statistics.median(r["tok_s"] for r in rows)
        tokens = statistics.median(r["tokens"] for r in rows)
        calls = statistics.median(r["calls"] for r in rows)
        line = f"{label:<26} {tokens:>7.0f} {tok_s:>7.1f} {tok_s / base:>7.2f}x {calls:>6.0f}"
        masked = [r for r in rows if "mask_ms" in r]
        if masked:
            mask = statistics.median(r["mask_ms"] for r in masked)
            rest = statistics.median(r["rest_ms"] for r in masked)
            line += f" {mask:>12.3f} {rest:>12.2f} {100 * mask / rest:>9.2f}%"
        else:
            line += f" {'-':>12} {'-':>12} {'-':>10}"
        print(line)
    print("\nmask cost: grammar mask time per token generated inside <tool_call>...</tool_call>, relative to the rest "
          "of the step (forward + sampling). tok/s excludes the prefill step.")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"(total {time.perf_counter() - t0:.0f} s)")
