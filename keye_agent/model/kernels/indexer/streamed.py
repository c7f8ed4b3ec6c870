"""Index scores and top-k streamed over query chunks, so a 128K-token prefill never holds the [T, S] matrix.

Each chunk of queries gets its causal scores written as float16 into one reused buffer (half the bytes of
float32, and the top-k then needs two histogram levels instead of four), then the radix top-k selects from it.
Float16 rounds a score to 11 significant bits, so keys whose scores differ by less than that can swap at the k-th
place: every selected key scores within 2**-10 relative of the k-th (the tolerance the tests state). Scores beyond
+-65504 are clamped there (they would tie); index scores of normalised q and k are orders of magnitude smaller.
Decode-sized calls (at most SPLIT_MAX_ROWS rows) write the scores of all rows at once and take the split top-k
(topk/split.py), whose first radix level the score kernel histograms as it writes.
"""

from __future__ import annotations

import torch

from keye_agent.model.kernels.indexer.scores import check_indexer_inputs, launch_scores
from keye_agent.model.kernels.topk.radix import launch_topk
from keye_agent.model.kernels.topk.split import launch_split_topk, split_workspace

__all__ = ["indexer_topk", "DEFAULT_CHUNK_BYTES", "SPLIT_MAX_ROWS"]

DEFAULT_CHUNK_BYTES = 1 << 30
"""Upper bound of the float16 chunk buffer (1 GiB: 4096 queries at 128K keys)."""
SPLIT_MAX_ROWS = 16
"""Calls with at most this many query rows (decode) split each row over many programs (topk/split.py)."""


def indexer_topk(
    q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, start: int, topk: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> torch.Tensor:
    """Fused indexer + top-k: q [B,T,H,d], w [B,T,H], k [B,S,d] -> idx [B, T, min(topk, S)] int32.

    Rows hold their keys in ascending order (unordered on the split path of decode-sized calls) and -1 past
    ``min(topk, start + t + 1)``.
    """
    check_indexer_inputs(q, w, k, start)
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    B, T = q.shape[:2]
    S = k.shape[1]
    out = torch.empty(B, T, min(topk, S), dtype=torch.int32, device=q.device)
    if T == 0 or B == 0:
        return out
    if B * T <= SPLIT_MAX_ROWS and S > 4 * topk and B * T * S * 2 <= chunk_bytes:
        ws = split_workspace(B * T, q.device)
        scores = torch.empty(B, T, start + T, dtype=torch.float16, device=q.device)
        launch_scores(q, w, k, start, scores, 0, T, hist=ws)
        launch_split_topk(scores, out, ws, start, 0, T, S, topk)
        return out
    chunk = max(1, min(T, chunk_bytes // max(1, 2 * B * S)))
    # rows that select everything need no scores: skip the queries whose causal range is not longer than topk
    first_scored = min(T, max(0, topk - start))
    if first_scored:
        launch_topk(out.new_empty(B, first_scored, 1, dtype=torch.float16), out, start, 0, first_scored, S, topk)
    buf = torch.empty(B * chunk * S, dtype=torch.float16, device=q.device)
    for t0 in range(first_scored, T, chunk):
        rows = min(chunk, T - t0)
        width = min(S, start + t0 + rows)  # the chunk's last query sees keys < width
        scores = buf[: B * rows * width].view(B, rows, width)
        launch_scores(q, w, k, start, scores, t0, rows)
        launch_topk(scores, out, start, t0, rows, S, topk)
    return out
