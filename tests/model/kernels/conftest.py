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
    "keye_agent.model.kernels.topk.split",
    "keye_agent.model.kernels.indexer.streamed",
    "keye_agent.model.kernels.sparse_attention.per_query",
    "keye_agent.model.kernels.sparse_attention.block_union",
    "keye_agent.model.kernels.sparse_attention.api",
    "keye_agent.model.kernels.decode.norms",
    "keye_agent.model.kernels.decode.attention",
    "keye_agent.model.kernels.decode.moe",
    "keye_agent.model.kernels.decode.dsa",
    "keye_agent.model.kernels.decode.paged",
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


TRITON_PREIMPORTED = "triton" in sys.modules and not ON_GPU
"""Triton imported earlier in this process without TRITON_INTERPRET: its own helpers are compiled-only, so the
interpreter cannot run our kernels here (the tests skip, saying so)."""


def _load_kernels() -> None:
    if ON_GPU or TRITON_PREIMPORTED:
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
    if TRITON_PREIMPORTED:
        pytest.skip("triton was imported before tests/model/kernels/conftest.py could set TRITON_INTERPRET=1; "
                    "run `pytest tests/model/kernels` in its own process")
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
    """The issue's top-k acceptance rule (topk/naive.py selection_problem): exact count, distinct, causal, and every
    selected key within the stated tolerance of the reference's k-th score."""
    from keye_agent.model.kernels.topk.naive import selection_problem

    problem = selection_problem(idx, ref_scores, start, topk, rel_tol)
    assert problem is None, problem
