"""Kernel tests: the Triton interpreter on the CPU (tiny shapes, fp16/fp32), compiled kernels in bf16 on CUDA.

Without a CUDA device, TRITON_INTERPRET=1 is set only while the kernel modules are (re)imported, because triton.jit
reads it when a kernel is decorated; it is removed again so that no other test's subprocess inherits it.
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


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def dtype(request):
    """bf16 on CUDA; fp16 and fp32 under the interpreter (its bf16 tl.dot is unreliable, MODEL.md)."""
    return request.param


@pytest.fixture
def device():
    return DEVICE
