"""Compiled evaluator of the forward models' tree ensembles (QuickScorer-style bitmasks).

Why: XGBoost's ``inplace_predict`` costs ~0.2 ms of fixed overhead per call whatever the row count,
and one recommendation needs two calls; that overhead alone exceeded the request budget. The artefact
stays XGBoost native UBJ (checksum-verified); this is a derived in-memory form built from the booster's
JSON dump at load time and checked against the booster's own predictions before it is used.

How (QuickScorer, Lucchese et al. 2015): the leaves of each tree are numbered left to right and a tree
state is a 64-bit mask of leaves still reachable. A split ``x[f] < thr`` that is FALSE for a row (the
row goes right) removes the leaves of its left subtree; the exit leaf is the lowest surviving bit.
Per feature, the splits sorted by threshold are false exactly for a prefix (``thr <= x``), so the
AND of their masks per tree is precomputed for every prefix length: a row costs one binary search and
one table row per feature. The loops themselves are numba kernels (inference_server/kernels.py).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from inference_server import kernels
from inference_server.kernels import ALL_LEAVES as _ALL
from inference_server.kernels import MAX_LEAVES

log = logging.getLogger(__name__)
_NO_HEAD = np.empty(0, dtype=np.float64)  # predict_fixed with no shared leading features: full rows
TRANSFORMS = {"reg:squarederror": "identity", "binary:logistic": "sigmoid"}


class ForestUnsupported(ValueError):
    """The booster uses something this evaluator does not model (the caller keeps XGBoost)."""


@dataclass(frozen=True)
class _Tree:
    leaves: list[float]  # leaf values, left to right
    splits: list[tuple[int, float, int]]  # (feature, threshold, mask of leaves that stay reachable)


def _parse_tree(tree: dict[str, Any]) -> _Tree:
    left, right = tree["left_children"], tree["right_children"]
    feats, conds = tree["split_indices"], tree["split_conditions"]
    if tree.get("split_type") and any(tree["split_type"]):
        raise ForestUnsupported("categorical splits")
    leaves: list[float] = []
    splits: list[tuple[int, float, int]] = []

    def walk(node: int) -> tuple[int, int]:  # -> (first leaf, end leaf) numbers of the subtree
        if left[node] == -1:
            leaves.append(float(np.float32(conds[node])))
            return len(leaves) - 1, len(leaves)
        first, mid = walk(left[node])
        _, end = walk(right[node])
        left_bits = ((1 << mid) - 1) ^ ((1 << first) - 1)
        splits.append((int(feats[node]), float(np.float32(conds[node])), left_bits))
        return first, end

    walk(0)
    if len(leaves) > MAX_LEAVES:
        raise ForestUnsupported(f"a tree has {len(leaves)} leaves > {MAX_LEAVES}")
    return _Tree(leaves, [(f, t, ~bits & 0xFFFFFFFFFFFFFFFF) for f, t, bits in splits])


def _booster_trees(booster: xgb.Booster) -> tuple[list[_Tree], str]:
    dump = json.loads(bytes(booster.save_raw(raw_format="json")))
    learner = dump["learner"]
    gbm = learner["gradient_booster"]
    if gbm.get("name") != "gbtree":
        raise ForestUnsupported(f"booster type {gbm.get('name')!r}")
    objective = learner["objective"]["name"]
    if objective not in TRANSFORMS:
        raise ForestUnsupported(f"objective {objective!r}")
    model = gbm["model"]
    if any(int(g) != 0 for g in model.get("tree_info", [])):
        raise ForestUnsupported("multi-output trees")
    return [_parse_tree(t) for t in model["trees"]], TRANSFORMS[objective]


class CompiledForest:
    """Several boosters over the same features, evaluated together by the compiled kernels.

    The arrays are the kernels' flat layout (inference_server/kernels.py): per feature its sorted
    distinct cuts ``cuts[cut_lo[f]:cut_hi[f]]`` and, from ``row_base[f]``, one table row per prefix of
    them; tree ``t`` of booster ``b`` lies in ``tree_lo[b] <= t < tree_hi[b]``."""

    def __init__(self, boosters: Sequence[xgb.Booster], n_features: int, check: np.ndarray) -> None:
        parsed = [_booster_trees(b) for b in boosters]
        trees = [t for ts, _ in parsed for t in ts]
        self.n_features = n_features
        bounds = np.cumsum([0] + [len(ts) for ts, _ in parsed])
        self.tree_lo = np.ascontiguousarray(bounds[:-1], dtype=np.int64)
        self.tree_hi = np.ascontiguousarray(bounds[1:], dtype=np.int64)
        self.sigmoid = np.array([tf == "sigmoid" for _, tf in parsed], dtype=np.bool_)
        n_trees = len(trees)
        values = np.zeros((n_trees, MAX_LEAVES), dtype=np.float32)
        for t, tree in enumerate(trees):
            values[t, : len(tree.leaves)] = tree.leaves
        self.values = values.ravel()
        cuts_per_feature: list[np.ndarray] = []
        tables: list[np.ndarray] = []
        for f in range(n_features):
            rows = [
                (thr, t, mask) for t, tree in enumerate(trees) for ff, thr, mask in tree.splits if ff == f
            ]
            thr = np.array([r[0] for r in rows], dtype=np.float32)
            # hist-trained trees share a few hundred cut values per feature: one table row per value
            cuts, slot = np.unique(thr, return_inverse=True)
            table = np.full((len(cuts) + 1, n_trees), _ALL, dtype=np.uint64)
            np.bitwise_and.at(
                table,
                (slot.reshape(-1) + 1, np.array([r[1] for r in rows], dtype=np.intp)),
                np.array([r[2] for r in rows], dtype=np.uint64),
            )
            tables.append(np.bitwise_and.accumulate(table, axis=0))
            cuts_per_feature.append(cuts)
        n_cuts = np.array([len(c) for c in cuts_per_feature], dtype=np.int64)
        self.cut_hi = np.cumsum(n_cuts)
        self.cut_lo = self.cut_hi - n_cuts
        self.row_base = self.cut_lo + np.arange(n_features, dtype=np.int64)  # n_cuts + 1 rows each
        self.cuts = np.ascontiguousarray(np.concatenate(cuts_per_feature), dtype=np.float32)
        self.tables = np.ascontiguousarray(np.vstack(tables))
        self.base = np.zeros(len(boosters), dtype=np.float64)
        self._calibrate(boosters, np.asarray(check, dtype=np.float32))

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        """The forest arrays in the order the kernels take them."""
        return (self.cuts, self.cut_lo, self.cut_hi, self.row_base, self.tables, self.values,
                self.tree_lo, self.tree_hi, self.base, self.sigmoid)  # fmt: skip

    def _calibrate(self, boosters: Sequence[xgb.Booster], x: np.ndarray) -> None:
        """Take the base margin from the booster itself, then require agreement on every check row."""
        x64 = np.ascontiguousarray(x, dtype=np.float64)
        identity = np.zeros(len(boosters), dtype=np.bool_)
        sums = kernels.predict_fixed(_NO_HEAD, x64, *self.kernel_args()[:-2], self.base, identity)
        for i, booster in enumerate(boosters):
            margin = np.asarray(booster.inplace_predict(x, predict_type="margin", validate_features=False))
            self.base[i] = float(np.median(margin.astype(np.float64) - sums[i]))
        got = self.predict(x64)
        for i, booster in enumerate(boosters):
            want = np.asarray(booster.inplace_predict(x, validate_features=False), dtype=np.float64)
            if not np.allclose(got[i], want, rtol=1e-5, atol=1e-4):
                worst = float(np.max(np.abs(got[i] - want)))
                raise ForestUnsupported(f"booster {i}: compiled predictions differ by {worst:.3g}")

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        """Predictions of each booster for rows ``x`` (n x n_features, finite)."""
        rows = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
        return list(kernels.predict_fixed(_NO_HEAD, rows, *self.kernel_args()))

    def predict_fixed(self, head: np.ndarray, tail: np.ndarray) -> list[np.ndarray]:
        """Predictions for rows ``[head, tail[i]]``: the leading features are the same for every row
        (one lot, many settings), so their masks are looked up once."""
        h = np.ascontiguousarray(head, dtype=np.float64)
        t = np.ascontiguousarray(np.atleast_2d(tail), dtype=np.float64)
        return list(kernels.predict_fixed(h, t, *self.kernel_args()))


def compile_boosters(
    boosters: Sequence[xgb.Booster], n_features: int, check: np.ndarray
) -> CompiledForest | None:
    """The compiled form, or None when the boosters use something it does not model (XGBoost serves)."""
    if len(check) == 0 or not all(math.isfinite(v) for v in np.asarray(check, dtype=np.float64).ravel()):
        return None
    try:
        return CompiledForest(boosters, n_features, check)
    except ForestUnsupported as exc:
        log.warning("compiled tree evaluator unavailable (%s): XGBoost predicts instead (slower)", exc)
        return None
