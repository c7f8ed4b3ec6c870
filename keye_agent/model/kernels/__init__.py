"""Triton kernels for DeepSeek Sparse Attention, each beside its float32 reference (``<op>/naive.py``).

Ops (signatures of keye_agent/model/ops.py): ``index_scores``, ``topk_select``, ``indexer_topk`` (streamed: never
holds the [T, S] score matrix) and ``sparse_attention`` (decode split, block-union prefill, per-query gather).
Importing this package needs no triton; ``register_all`` imports the kernels and returns False where triton is
missing, so the model falls back to its references. When keye_agent.model.ops is already loaded (it imports this
package to find kernels), importing the package registers the kernels there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["register_all", "OPS"]

OPS = ("index_scores", "topk_select", "indexer_topk", "sparse_attention")
"""The ops register_all provides under the backend name "triton"."""


def register_all(register_impl: Callable[[str, str, Callable], None]) -> bool:
    """Register the Triton kernels as ``register_impl(op_name, "triton", fn)``; False if triton is unavailable."""
    try:
        from keye_agent.model.kernels.indexer.scores import index_scores
        from keye_agent.model.kernels.indexer.streamed import indexer_topk
        from keye_agent.model.kernels.sparse_attention.api import sparse_attention
        from keye_agent.model.kernels.topk.radix import topk_select
    except ImportError:
        return False
    impls = {
        "index_scores": index_scores,
        "topk_select": topk_select,
        "indexer_topk": indexer_topk,
        "sparse_attention": sparse_attention,
    }
    for name in OPS:
        register_impl(name, "triton", impls[name])
    return True


def _register_with_loaded_ops() -> None:
    # looked up, not imported: the kernels never pull the model in, the model's dispatch pulls the kernels in
    ops = sys.modules.get("keye_agent.model.ops")
    if ops is not None and hasattr(ops, "register_impl"):
        register_all(ops.register_impl)


_register_with_loaded_ops()
