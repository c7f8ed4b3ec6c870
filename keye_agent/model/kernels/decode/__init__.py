"""Triton kernels of the fused one-token decode step (``keye_agent/model/fused_decode.py``), each beside its plain
PyTorch reference in ``naive.py``.

- ``norms``: residual add (+ sum of MoE partials) + RMSNorm (+ router logits); per-head QK-norm + RoPE with the
  K/V / index-key cache write at a position read from device memory.
- ``attention``: dense GQA decode over the filled part of the cache only (split over the filled length).
- ``moe``: routing (softmax, top-k, normalise) + gate_up + SiLU-mul, then down, reading only the chosen experts.
- ``paged``: dense decode attention over a paged cache through each row's slot table (the batched step).
- ``dsa``: DSA decode (index scores over the filled part, split top-k, sparse attention) at a device position.
"""
