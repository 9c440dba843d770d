"""Vectorized numpy evaluator of the forward models' tree ensembles (QuickScorer-style bitmasks).

Why: XGBoost's ``inplace_predict`` costs ~0.2 ms of fixed overhead per call whatever the row count,
and one recommendation needs two calls; that overhead alone exceeded the request budget. The artefact
stays XGBoost native UBJ (checksum-verified); this is a derived in-memory form built from the booster's
JSON dump at load time and checked against the booster's own predictions before it is used.

How (QuickScorer, Lucchese et al. 2015): the leaves of each tree are numbered left to right and a tree
state is a 64-bit mask of leaves still reachable. A split ``x[f] < thr`` that is FALSE for a row (the
row goes right) removes the leaves of its left subtree; the exit leaf is the lowest surviving bit.
Per feature, the splits sorted by threshold are false exactly for a prefix (``thr <= x``), so the
AND of their masks per tree is precomputed for every prefix length: a row costs one ``searchsorted``
and one table row per feature, and everything is an array operation over (rows, trees).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

log = logging.getLogger(__name__)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
MAX_LEAVES = 64
_F32_BIAS = 127  # a one-bit mask 2**k converted to float32 has biased exponent 127 + k (the leaf number)
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
    """Several boosters over the same features, evaluated together (one pass over all their trees)."""

    def __init__(self, boosters: Sequence[xgb.Booster], n_features: int, check: np.ndarray) -> None:
        parsed = [_booster_trees(b) for b in boosters]
        trees = [t for ts, _ in parsed for t in ts]
        self.n_features = n_features
        self.transforms = [tf for _, tf in parsed]
        bounds = np.cumsum([0] + [len(ts) for ts, _ in parsed])
        self.slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        n_trees = len(trees)
        values = np.zeros((n_trees, MAX_LEAVES), dtype=np.float64)
        for t, tree in enumerate(trees):
            values[t, : len(tree.leaves)] = tree.leaves
        self.values = values.ravel()
        self.offsets = (np.arange(n_trees, dtype=np.int32) * MAX_LEAVES - _F32_BIAS)[None, :]
        self.thresholds: list[np.ndarray] = []
        self.tables: list[np.ndarray] = []
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
            self.tables.append(np.bitwise_and.accumulate(table, axis=0))
            self.thresholds.append(cuts)
        self.base_margin = [0.0] * len(boosters)
        self._calibrate(boosters, np.asarray(check, dtype=np.float32))

    def _calibrate(self, boosters: Sequence[xgb.Booster], x: np.ndarray) -> None:
        """Take the base margin from the booster itself, then require agreement on every check row."""
        sums = self._tree_sums(self._masks(x))
        for i, booster in enumerate(boosters):
            margin = np.asarray(booster.inplace_predict(x, predict_type="margin", validate_features=False))
            offset = margin.astype(np.float64) - sums[i]
            self.base_margin[i] = float(np.median(offset))
            want = np.asarray(booster.inplace_predict(x, validate_features=False), dtype=np.float64)
            got = self.predict(x)[i]
            if not np.allclose(got, want, rtol=1e-5, atol=1e-4):
                worst = float(np.max(np.abs(got - want)))
                raise ForestUnsupported(f"booster {i}: compiled predictions differ by {worst:.3g}")

    def _masks(self, x: np.ndarray) -> np.ndarray:
        mask: np.ndarray | None = None
        for f in range(self.n_features):
            rows = self.tables[f][np.searchsorted(self.thresholds[f], x[:, f], side="right")]
            mask = rows if mask is None else mask & rows
        assert mask is not None
        return mask

    def _tree_sums(self, mask: np.ndarray) -> list[np.ndarray]:
        low = mask & (np.uint64(0) - mask)  # lowest surviving bit = exit leaf
        # its number = float32 exponent (exact for a power of two; 2**63 turns negative as int64, so
        # the sign is masked off), then one gather of the leaf values
        exponent = (low.view(np.int64).astype(np.float32).view(np.int32) >> 23) & 0xFF
        leaf = self.values.take(exponent + self.offsets)
        return [leaf[:, s].sum(axis=1) for s in self.slices]

    def _finish(self, sums: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for s, base, tf in zip(sums, self.base_margin, self.transforms, strict=True):
            margin = s + base
            out.append(margin if tf == "identity" else 1.0 / (1.0 + np.exp(-margin)))
        return out

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        """Predictions of each booster for rows ``x`` (n x n_features, finite)."""
        return self._finish(self._tree_sums(self._masks(np.asarray(x, dtype=np.float32))))

    def predict_fixed(self, head: np.ndarray, tail: np.ndarray) -> list[np.ndarray]:
        """Predictions for rows ``[head, tail[i]]``: the leading features are the same for every row
        (one lot, many settings), so their masks are looked up once."""
        head32 = np.asarray(head, dtype=np.float32)
        tail32 = np.asarray(tail, dtype=np.float32)
        mask = np.full(self.tables[0].shape[1], _ALL, dtype=np.uint64)
        for f, v in enumerate(head32):
            mask = mask & self.tables[f][np.searchsorted(self.thresholds[f], v, side="right")]
        n_head = len(head32)
        for j in range(tail32.shape[1]):
            f = n_head + j
            mask = mask & self.tables[f][np.searchsorted(self.thresholds[f], tail32[:, j], side="right")]
        return self._finish(self._tree_sums(np.atleast_2d(mask)))


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
