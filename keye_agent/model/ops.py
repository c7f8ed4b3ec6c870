"""The dispatch point for attention and indexer work: plain PyTorch references, and a registry for kernels.

Shapes: B batch, T new queries, S keys (cache length including the new ones), H indexer heads, d indexer dim,
Hq query heads, Hkv kv heads, D head dim, K selected keys per query. Query t sits at absolute position
``start + t`` and may see keys ``s <= start + t``. ``k``/``v`` may be views of a preallocated cache
([B, S_max, Hkv, D] sliced to S), so implementations must honour strides.

- ``index_scores(q [B,T,H,d], w [B,T,H], k [B,S,d], start) -> [B,T,S] float32``, masked positions -inf;
  ``I[t,s] = sum_j w[t,j] * d**-0.5 * relu(q[t,j] . k[s])``.
- ``topk_select(scores [B,T,S], start, topk) -> idx [B,T,K] int32``, ``K = min(topk, S)``; entries beyond
  ``min(topk, start+t+1)`` are -1; when ``start+t+1 <= topk`` all keys ``0..start+t`` are selected. The order of
  the selected entries is unspecified; the reference breaks score ties toward the lower key index.
- ``indexer_topk(q, w, k, start, topk) -> idx``: the composition (kernels may fuse it).
- ``sparse_attention(q [B,T,Hq,D], k [B,S,Hkv,D], v [B,S,Hkv,D], idx [B,T,K] int32, scale) -> [B,T,Hq,D]``:
  each query attends to its selected keys only (-1 entries unused), softmax over them.
- ``dense_attention(q, k, v, start, scale) -> [B,T,Hq,D]``: causal GQA.

Kernels plug in with ``register_impl(op_name, backend, fn)``; ``set_backend("reference" | "triton" | "auto")``
picks them. "auto" uses a registered Triton implementation for CUDA tensors (after importing
``keye_agent.model.kernels``, which registers them, if it imports) and the reference otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "OPS", "dense_attention", "get_backend", "index_scores", "indexer_topk", "register_impl", "set_backend",
    "sparse_attention", "topk_select",
]

OPS = ("index_scores", "topk_select", "indexer_topk", "sparse_attention", "dense_attention")
_BACKENDS = ("reference", "triton", "auto")
_impls: dict[str, dict[str, Callable]] = {op: {} for op in OPS}
_backend = "auto"
_kernels_imported = False

# Bound on the elements of one materialised intermediate in the references (keeps 4K-32K prefill in memory).
_CHUNK_ELEMS = 1 << 28


def register_impl(op_name: str, backend: str, fn: Callable) -> None:
    """Register ``fn`` as the ``backend`` implementation of ``op_name`` (one of ``OPS``)."""
    if op_name not in _impls:
        raise ValueError(f"register_impl: unknown op_name {op_name!r}; known ops: {list(OPS)}")
    if backend not in ("reference", "triton"):
        raise ValueError(f"register_impl: backend must be 'reference' or 'triton', got {backend!r}")
    if not callable(fn):
        raise TypeError(f"register_impl: fn for {op_name!r} must be callable, got {type(fn).__name__}")
    _impls[op_name][backend] = fn


def set_backend(name: str) -> None:
    """Choose the implementations: "reference" (PyTorch), "triton" (kernels, required), or "auto"."""
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"set_backend: name must be one of {list(_BACKENDS)}, got {name!r}")
    if name == "triton":
        _import_kernels()
    _backend = name


def get_backend() -> str:
    """The backend chosen by ``set_backend`` ("auto" unless changed)."""
    return _backend


def _import_kernels() -> bool:
    global _kernels_imported
    if not _kernels_imported:
        _kernels_imported = True
        try:
            kernels = importlib.import_module("keye_agent.model.kernels")
        except ImportError:
            # No kernels package: "auto" falls back to the references.
            return False
        register_all = getattr(kernels, "register_all", None)
        if register_all is not None:
            # Registering again is harmless; it covers a kernels package imported before this module.
            return bool(register_all(register_impl))
    return True


def _resolve(op: str, device: torch.device) -> Callable:
    if _backend == "reference":
        return _impls[op]["reference"]
    _import_kernels()
    fn = _impls[op].get("triton")
    if _backend == "triton":
        if fn is None:
            raise NotImplementedError(f"backend 'triton' has no implementation of {op!r}; use set_backend('auto')")
        return fn
    if fn is not None and device.type == "cuda":
        return fn
    return _impls[op]["reference"]


def _need(cond: bool, op: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{op}: {msg}")


# -- public entry points (validate, then dispatch) -----------------------------------------------------------------
def index_scores(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int) -> torch.Tensor:
    """Gated ReLU index scores [B,T,S] float32, -inf where s > start + t."""
    _need(q.dim() == 4 and w.dim() == 3 and k.dim() == 3, "index_scores",
          f"expected q [B,T,H,d], w [B,T,H], k [B,S,d]; got q {tuple(q.shape)}, w {tuple(w.shape)}, k {tuple(k.shape)}")
    B, T, H, d = q.shape
    _need(tuple(w.shape) == (B, T, H) and k.shape[0] == B and k.shape[2] == d, "index_scores",
          f"shapes disagree: q {tuple(q.shape)}, w {tuple(w.shape)}, k {tuple(k.shape)}")
    _need(0 <= start and start + T <= k.shape[1], "index_scores",
          f"start {start} + T {T} must lie within S {k.shape[1]}")
    return _resolve("index_scores", q.device)(q, w, k, start)


def topk_select(scores: torch.Tensor, start: int, topk: int) -> torch.Tensor:
    """Indices [B,T,min(topk,S)] int32 of the highest scores among visible keys, -1 padded."""
    _need(scores.dim() == 3, "topk_select", f"expected scores [B,T,S], got {tuple(scores.shape)}")
    _need(topk >= 1, "topk_select", f"topk must be >= 1, got {topk}")
    _need(0 <= start and start + scores.shape[1] <= scores.shape[2], "topk_select",
          f"start {start} + T {scores.shape[1]} must lie within S {scores.shape[2]}")
    return _resolve("topk_select", scores.device)(scores, start, topk)


def indexer_topk(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int, topk: int) -> torch.Tensor:
    """``topk_select(index_scores(q, w, k, start), start, topk)``, possibly fused by a kernel."""
    fn = _impls["indexer_topk"].get("triton")
    if fn is not None and _backend != "reference" and (_backend == "triton" or q.device.type == "cuda"):
        return fn(q, w, k, start, topk)
    return topk_select(index_scores(q, w, k, start), start, topk)


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """Attention of each query over its own selected keys ``idx`` (-1 = unused), GQA."""
    _check_attn("sparse_attention", q, k, v)
    _need(idx.dim() == 3 and idx.shape[:2] == q.shape[:2] and idx.dtype == torch.int32, "sparse_attention",
          f"idx must be int32 [B,T,K] matching q {tuple(q.shape)}; got {idx.dtype} {tuple(idx.shape)}")
    return _resolve("sparse_attention", q.device)(q, k, v, idx, scale)


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, scale: float) -> torch.Tensor:
    """Causal GQA attention: query t sees keys 0..start+t."""
    _check_attn("dense_attention", q, k, v)
    _need(0 <= start and start + q.shape[1] <= k.shape[1], "dense_attention",
          f"start {start} + T {q.shape[1]} must lie within S {k.shape[1]}")
    return _resolve("dense_attention", q.device)(q, k, v, start, scale)


def _check_attn(op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    _need(q.dim() == 4 and k.dim() == 4 and k.shape == v.shape, op,
          f"expected q [B,T,Hq,D], k and v [B,S,Hkv,D]; got q {tuple(q.shape)}, k {tuple(k.shape)}, "
          f"v {tuple(v.shape)}")
    _need(q.shape[0] == k.shape[0] and q.shape[3] == k.shape[3] and q.shape[2] % k.shape[2] == 0, op,
          f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree (batch, head dim, or Hq not a multiple of Hkv)")


# -- references --------------------------------------------------------------------------------------------------
def _visible(T: int, S: int, start: int, device: torch.device) -> torch.Tensor:
    """[T, S] bool: key s visible to query t."""
    t = torch.arange(T, device=device)[:, None] + start
    return torch.arange(S, device=device)[None, :] <= t


def _ref_index_scores(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int) -> torch.Tensor:
    B, T, H, d = q.shape
    S = k.shape[1]
    out = torch.empty(B, T, S, dtype=torch.float32, device=q.device)
    kf = k.float()
    wf = w.float() * d**-0.5
    step = max(1, _CHUNK_ELEMS // max(1, B * H * S))
    for t0 in range(0, T, step):
        t1 = min(T, t0 + step)
        logits = torch.einsum("bthd,bsd->bths", q[:, t0:t1].float(), kf).relu_()  # [B, t, H, S]
        out[:, t0:t1] = torch.einsum("bths,bth->bts", logits, wf[:, t0:t1])
    return out.masked_fill_(~_visible(T, S, start, q.device), float("-inf"))


def _ref_topk_select(scores: torch.Tensor, start: int, topk: int) -> torch.Tensor:
    B, T, S = scores.shape
    K = min(topk, S)
    # A stable descending sort breaks ties toward the lower key index, so the selection is deterministic.
    idx = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :K]
    n_valid = (torch.arange(T, device=scores.device) + start + 1).clamp(max=K)  # [T]
    keep = torch.arange(K, device=scores.device)[None, :] < n_valid[:, None]  # [T, K]
    # Rows whose whole range fits in top-k select every visible key, whatever the scores say.
    idx = torch.where(keep, idx, -1)
    return idx.to(torch.int32)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """q [B,t,Hq,D], k/v [B,S,Hkv,D], mask [B or 1, t, S] bool -> [B,t,Hq,D] (softmax in fp32 on CPU-sized work)."""
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask[:, None], scale=scale,
                                         enable_gqa=q.shape[2] != k.shape[2])
    return out.transpose(1, 2)


def _ref_dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, scale: float) -> torch.Tensor:
    B, T, Hq, D = q.shape
    S = k.shape[1]
    if start == 0 and T == S and T > 1:
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True, scale=scale, enable_gqa=Hq != k.shape[2])
        return out.transpose(1, 2)
    k, v = k[:, : start + T], v[:, : start + T]
    return _attend(q, k, v, _visible(T, start + T, start, q.device)[None], scale)


def _ref_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor,
                          scale: float) -> torch.Tensor:
    B, T, Hq, D = q.shape
    S = k.shape[1]
    out = torch.empty_like(q)
    step = max(1, _CHUNK_ELEMS // max(1, B * Hq * S))
    for t0 in range(0, T, step):
        t1 = min(T, t0 + step)
        sel = idx[:, t0:t1].long()
        # Scatter the selection into a [B, t, S+1] mask; column S absorbs the -1 (unused) entries.
        mask = torch.zeros(B, t1 - t0, S + 1, dtype=torch.bool, device=q.device)
        mask.scatter_(2, torch.where(sel < 0, S, sel), True)
        out[:, t0:t1] = _attend(q[:, t0:t1], k, v, mask[..., :S], scale)
    return out


def _ref_indexer_topk(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int, topk: int) -> torch.Tensor:
    return _ref_topk_select(_ref_index_scores(q, w, k, start), start, topk)


register_impl("index_scores", "reference", _ref_index_scores)
register_impl("topk_select", "reference", _ref_topk_select)
register_impl("indexer_topk", "reference", _ref_indexer_topk)
register_impl("sparse_attention", "reference", _ref_sparse_attention)
register_impl("dense_attention", "reference", _ref_dense_attention)
