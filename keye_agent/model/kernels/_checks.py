"""Shape, dtype and stride checks shared by the kernel wrappers (ValueError quoting the shapes)."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_dims(name: str, x: torch.Tensor, ndim: int, layout: str) -> None:
    """Raise ValueError unless ``x`` has ``ndim`` dims and a float dtype with a unit last stride."""
    if x.dim() != ndim:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float16, bfloat16 or float32, got {x.dtype}")
    if x.shape[-1] > 1 and x.stride(-1) != 1:
        raise ValueError(f"{name} must have a unit stride in its last dim (call .contiguous()), got {x.stride()}")


def check_idx(idx: torch.Tensor, B: int, T: int) -> None:
    """Raise ValueError unless ``idx`` is [B, T, K] int32."""
    if idx.dim() != 3 or idx.shape[0] != B or idx.shape[1] != T:
        raise ValueError(f"idx must be [B={B}, T={T}, K], got shape {tuple(idx.shape)}")
    if idx.dtype != torch.int32:
        raise ValueError(f"idx must be int32, got {idx.dtype}")


def pow2(n: int, floor: int = 1) -> int:
    """Smallest power of two >= max(n, floor)."""
    n = max(n, floor)
    return 1 << (n - 1).bit_length()


def dot_precision(dtype: torch.dtype) -> str:
    """IEEE float32 products for float32 inputs (the default would be tf32 on the GPU)."""
    return "ieee" if dtype == torch.float32 else "tf32"
