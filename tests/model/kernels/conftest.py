"""Kernel tests: the Triton interpreter on the CPU (tiny shapes, fp16/fp32), compiled kernels in bf16 on CUDA.

Without a CUDA device, TRITON_INTERPRET=1 is set while the kernel modules are (re)imported (triton.jit reads it when
a kernel is decorated) and, by an autouse fixture, during each test of this folder; it is removed after each, so no
other test's subprocess inherits it.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch

KERNEL_MODULES = (
    "keye_agent.model.kernels.indexer.scores",
    "keye_agent.model.kernels.topk.radix",
    "keye_agent.model.kernels.indexer.streamed",
    "keye_agent.model.kernels.sparse_attention.per_query",
    "keye_agent.model.kernels.sparse_attention.block_union",
    "keye_agent.model.kernels.sparse_attention.api",
    "keye_agent.model.kernels",
)

ON_GPU = torch.cuda.is_available()


def _patch_interpreter_index() -> None:
    """triton 3.6's interpreter calls int() on a 1-element array for run-time loop bounds; numpy >= 2.4 refuses
    that, so such loops fail under TRITON_INTERPRET=1. Convert through .item() instead (test-only shim)."""
    from triton.runtime import interpreter

    if getattr(interpreter, "_keye_index_shim", False):
        return
    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched
    interpreter._keye_index_shim = True


def _load_kernels() -> None:
    if ON_GPU:
        for name in KERNEL_MODULES:
            importlib.import_module(name)
        return
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        _patch_interpreter_index()
        for name in KERNEL_MODULES:
            if name in sys.modules:
                importlib.reload(sys.modules[name])
            else:
                importlib.import_module(name)
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


_load_kernels()

DEVICE = "cuda" if ON_GPU else "cpu"
DTYPES = [torch.bfloat16] if ON_GPU else [torch.float16, torch.float32]


@pytest.fixture(autouse=True)
def _interpret_while_testing(monkeypatch):
    """The interpreter also reads TRITON_INTERPRET while a kernel runs: set it for this folder's tests only."""
    if not ON_GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def dtype(request):
    """bf16 on CUDA; fp16 and fp32 under the interpreter (its bf16 tl.dot is unreliable, MODEL.md)."""
    return request.param


@pytest.fixture
def device():
    return DEVICE


INT_POISON = -77777


@pytest.fixture
def poison(monkeypatch):
    """Make torch.empty / torch.empty_like return NaN-filled floats (ints: INT_POISON) during the test, so an
    output element a kernel forgets to write shows up in the comparison."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def fill(t: torch.Tensor) -> torch.Tensor:
        return t.fill_(float("nan")) if t.is_floating_point() else t.fill_(INT_POISON)

    monkeypatch.setattr(torch, "empty", lambda *a, **kw: fill(real_empty(*a, **kw)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **kw: fill(real_empty_like(*a, **kw)))


def rel_rms(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; NaN anywhere gives inf."""
    out, ref = out.double().cpu(), ref.double().cpu()
    if not torch.isfinite(out).all():
        return float("inf")
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


REL_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
"""Relative-RMS tolerance by input dtype (STYLE/COMMON: fp32 ~1e-5, half precisions ~1e-2)."""


def check_selection(idx: torch.Tensor, ref_scores: torch.Tensor, start: int, topk: int, rel_tol: float) -> None:
    """The issue's top-k acceptance rule, row by row.

    Row t holds exactly n = min(topk, start + t + 1) distinct indices, all <= start + t, in its first n slots and -1
    after them; every selected key scores, in the reference, at least the reference's n-th best score minus
    ``rel_tol * |n-th score| + 1e-5 * max |visible score|`` (ties and rounding may swap keys at the boundary).
    """
    idx, ref_scores = idx.cpu().long(), ref_scores.cpu().double()
    B, T, K = idx.shape
    S = ref_scores.shape[2]
    assert K == min(topk, S), f"K={K}, expected min(topk={topk}, S={S})"
    for b in range(B):
        for t in range(T):
            visible = start + t + 1
            n = min(topk, visible)
            row = idx[b, t]
            assert (row[n:] == -1).all(), f"row {b},{t}: slots past {n} must be -1, got {row[n:].tolist()}"
            sel = row[:n]
            assert ((sel >= 0) & (sel < visible)).all(), f"row {b},{t}: indices outside [0, {visible}): {sel}"
            assert sel.unique().numel() == n, f"row {b},{t}: {n} slots but {sel.unique().numel()} distinct"
            vis = ref_scores[b, t, :visible]
            kth = vis.topk(n).values[-1]
            tol = rel_tol * kth.abs() + 1e-5 * vis.abs().max()
            worst = vis[sel].min()
            assert worst >= kth - tol, f"row {b},{t}: selected score {worst} < k-th {kth} - {tol}"
