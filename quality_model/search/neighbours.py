"""Bucket index of the historical lots, for the exact k-nearest-lot query of the compiled search.

Why: every request needs the 48 historical rows whose lots are closest to the incoming lot (their
settings become candidates, and they bound the support distance). Scanning all of up to 4,000 rows
touches ~100 KB per request, which the web framework then evicts again. The rows are split at medians
(widest dimension first) into buckets of at most ``LEAF_ROWS`` contiguous rows with a bounding box
each; the query (kernels.nearest_lots) visits buckets in order of the distance to their box and stops
once no unvisited box can hold a closer row, so the answer is exact and only a few buckets are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEAF_ROWS = 64


@dataclass(frozen=True)
class LotIndex:
    """Rows reordered bucket by bucket; ``order[p]`` is the original row of position ``p``."""

    columns: np.ndarray  # d x n, float64, bucket-ordered (feature-major: the distance loop vectorizes)
    order: np.ndarray  # n, int64
    bucket_lo: np.ndarray  # buckets, int64: first position
    bucket_hi: np.ndarray  # buckets, int64: end position
    box_lo: np.ndarray  # buckets x d: per-dimension minimum
    box_hi: np.ndarray  # buckets x d: per-dimension maximum


def build_lot_index(points: np.ndarray, leaf_rows: int = LEAF_ROWS) -> LotIndex:
    """Median splits on the widest dimension until every bucket holds at most ``leaf_rows`` rows."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"lot index: expected a non-empty n x d array, got shape {points.shape}")
    if leaf_rows < 1:
        raise ValueError(f"lot index: leaf_rows must be >= 1, got {leaf_rows}")
    buckets: list[np.ndarray] = []
    pending = [np.arange(len(points))]
    while pending:
        rows = pending.pop()
        if len(rows) <= leaf_rows:
            buckets.append(rows)
            continue
        part = points[rows]
        dim = int(np.argmax(part.max(axis=0) - part.min(axis=0)))
        ranked = rows[np.argsort(part[:, dim], kind="stable")]
        half = len(ranked) // 2
        pending.extend((ranked[half:], ranked[:half]))
    order = np.concatenate(buckets).astype(np.int64)
    sizes = np.array([len(b) for b in buckets], dtype=np.int64)
    hi = np.cumsum(sizes)
    return LotIndex(
        columns=np.ascontiguousarray(points[order].T),
        order=order,
        bucket_lo=hi - sizes,
        bucket_hi=hi,
        box_lo=np.array([points[b].min(axis=0) for b in buckets]),
        box_hi=np.array([points[b].max(axis=0) for b in buckets]),
    )
