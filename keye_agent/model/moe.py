"""Expert computation of the MoE: three interchangeable implementations of one function.

``experts_*(x [N, hidden], chosen [N, k] int64, weights [N, k] float32, gate_up [E, hidden, 2I], down [E, I, hidden])
-> [N, hidden]`` in x's dtype: ``sum_j weights[n, j] * SwiGLU_{chosen[n, j]}(x[n])``.

- ``loop``: the original reference. Rows sorted by expert, one matmul pair per expert with rows; it reads the
  per-expert counts on the host (one sync per layer) and launches up to 3 * E small kernels per layer.
- ``grouped``: rows sorted by expert, then two grouped GEMMs (``torch._grouped_mm``) over all experts at once, with
  group offsets computed on the device, so there is no host sync and the launch count does not grow with E.
  Experts that received no row cost nothing, so one decode token reads only its k experts' weights.
- ``gather``: for a handful of rows (decode without ``_grouped_mm``): gathers each (token, slot)'s expert weights
  and runs batched matmuls; no sync, but it copies the k selected experts' weights once per step.

``set_moe_impl("auto" | "loop" | "grouped" | "gather")`` picks one for every ``SparseMoe``; "auto" (the default) uses
``grouped`` where ``torch._grouped_mm`` supports the tensors (CPU; CUDA in bfloat16), ``gather`` for at most
``GATHER_MAX_ROWS`` (token, slot) rows elsewhere, and ``loop`` otherwise. "gather" applies to at most
``GATHER_MAX_ROWS`` rows; larger batches take the "auto" choice.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["GATHER_MAX_ROWS", "MOE_IMPLS", "experts", "experts_gather", "experts_grouped", "experts_loop",
           "get_moe_impl", "set_moe_impl"]

MOE_IMPLS = ("auto", "loop", "grouped", "gather")
GATHER_MAX_ROWS = 64  # (token, slot) rows up to which "gather" beats the per-expert loop when grouped GEMM is absent

_impl = "auto"


def set_moe_impl(name: str) -> None:
    """Choose the expert implementation of every SparseMoe: one of ``MOE_IMPLS``."""
    global _impl
    if name not in MOE_IMPLS:
        raise ValueError(f"set_moe_impl: name must be one of {list(MOE_IMPLS)}, got {name!r}")
    if name == "grouped" and not hasattr(torch, "_grouped_mm"):
        raise ValueError(f"set_moe_impl('grouped'): this torch ({torch.__version__}) has no torch._grouped_mm; "
                         "use 'auto'")
    _impl = name


def get_moe_impl() -> str:
    """The implementation chosen by ``set_moe_impl`` ("auto" unless changed)."""
    return _impl


def _sort_rows(chosen: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(expert of each sorted row, order of the flat (token, slot) rows, token of each sorted row)."""
    flat = chosen.flatten()
    sorted_expert, order = torch.sort(flat, stable=True)
    return sorted_expert, order, order // k


def _combine(out_rows: torch.Tensor, order: torch.Tensor, weights: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Undo the sort and sum each token's k expert outputs with their router weights (in float32)."""
    n, k = weights.shape
    unsorted = torch.empty_like(out_rows)
    unsorted[order] = out_rows
    # Rounding the weighted rows to the model dtype first matches the loop (which scales in that dtype).
    scaled = unsorted.view(n, k, -1) * weights[..., None].to(out_rows.dtype)
    return scaled.float().sum(1).to(dtype)


def experts_loop(x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
                 down: torch.Tensor) -> torch.Tensor:
    """The original per-expert loop (one host sync per call); the reference for the others."""
    k, n_experts, inter = chosen.shape[1], gate_up.shape[0], down.shape[1]
    flat = chosen.flatten()
    order = torch.argsort(flat, stable=True)
    token = order // k
    rows = x[token]
    counts = torch.bincount(flat, minlength=n_experts).tolist()  # one host sync per layer
    out_rows = torch.empty_like(rows)
    offset = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        h = rows[offset: offset + n] @ gate_up[e]  # [n, 2I]
        out_rows[offset: offset + n] = (F.silu(h[:, :inter]) * h[:, inter:]) @ down[e]
        offset += n
    out_rows = out_rows * weights.flatten()[order, None].to(x.dtype)
    return torch.zeros_like(x).index_add_(0, token, out_rows)


def experts_grouped(x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
                    down: torch.Tensor) -> torch.Tensor:
    """Two grouped GEMMs over the expert-sorted rows; group ends found by searchsorted on the device (no sync)."""
    k, n_experts, inter = chosen.shape[1], gate_up.shape[0], down.shape[1]
    sorted_expert, order, token = _sort_rows(chosen, k)
    rows = x[token]
    # offs[e] = rows routed to experts 0..e (cumulative group ends, int32 as _grouped_mm wants them).
    experts_ids = torch.arange(n_experts, device=x.device, dtype=sorted_expert.dtype)
    offs = torch.searchsorted(sorted_expert, experts_ids, right=True, out_int32=True)
    h = torch._grouped_mm(rows, gate_up, offs=offs)  # [N*k, 2I]
    out_rows = torch._grouped_mm(F.silu(h[:, :inter]) * h[:, inter:], down, offs=offs)  # [N*k, hidden]
    return _combine(out_rows, order, weights, x.dtype)


def experts_gather(x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
                   down: torch.Tensor) -> torch.Tensor:
    """Batched matmuls over gathered expert weights, one batch entry per (token, slot): for a few rows only."""
    n, k = chosen.shape
    inter = down.shape[1]
    flat = chosen.flatten()
    rows = x.repeat_interleave(k, dim=0)[:, None]  # [N*k, 1, hidden], row j*k+s is token j
    h = torch.bmm(rows, gate_up.index_select(0, flat))  # [N*k, 1, 2I]
    out_rows = torch.bmm(F.silu(h[..., :inter]) * h[..., inter:], down.index_select(0, flat))[:, 0]
    scaled = out_rows.view(n, k, -1) * weights[..., None].to(out_rows.dtype)
    return scaled.float().sum(1).to(x.dtype)


def _grouped_ok(x: torch.Tensor, gate_up: torch.Tensor) -> bool:
    if not hasattr(torch, "_grouped_mm"):
        return False
    if x.device.type == "cpu":
        return True
    # The CUDA grouped GEMM takes bfloat16 on Hopper and newer; row strides must be 16-byte aligned.
    return (x.device.type == "cuda" and x.dtype == torch.bfloat16 and gate_up.dtype == torch.bfloat16
            and torch.cuda.get_device_capability(x.device)[0] >= 9
            and gate_up.shape[-1] % 8 == 0 and gate_up.shape[-2] % 8 == 0)


_IMPLS: dict[str, Callable[..., torch.Tensor]] = {
    "loop": experts_loop, "grouped": experts_grouped, "gather": experts_gather,
}


def experts(x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
            down: torch.Tensor) -> torch.Tensor:
    """Dispatch to the implementation chosen by ``set_moe_impl`` (see the module docstring for "auto")."""
    name = _impl
    if name == "gather" and chosen.numel() > GATHER_MAX_ROWS:
        # Gathering copies k expert matrices per token: past a handful of rows (a prefill) it would need
        # gigabytes, so larger batches take the automatic choice even when "gather" is set.
        name = "auto"
    if name == "auto":
        if _grouped_ok(x, gate_up):
            name = "grouped"
        elif chosen.numel() <= GATHER_MAX_ROWS:
            name = "gather"
        else:
            name = "loop"
    return _IMPLS[name](x, chosen, weights, gate_up, down)
