"""Compiled evaluator of the forward models' tree ensembles (QuickScorer-style bitmasks).

Why: XGBoost's ``inplace_predict`` costs ~0.2 ms of fixed overhead per call whatever the row count,
and one recommendation needs two calls; that overhead alone exceeded the request budget. The artefact
stays XGBoost native UBJ (checksum-verified); this is a derived in-memory form built from the booster's
JSON dump at load time and checked against the booster's own predictions before it is used.

How (QuickScorer, Lucchese et al. 2015): the leaves of each tree are numbered left to right and a tree
state is a mask of leaves still reachable (16, 32 or 64 bits: the narrowest that holds the booster's
largest tree). A split ``x[f] < thr`` that is FALSE for a row (the
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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import xgboost as xgb

from quality_model.search import kernels

log = logging.getLogger(__name__)
_NO_HEAD = np.empty(0, dtype=np.float64)  # predict_fixed with no shared leading features: full rows
MAX_LEAVES = 64  # the widest leaf mask the kernels take (uint64)
TRANSFORMS = {"reg:squarederror": "identity", "binary:logistic": "sigmoid"}


class ForestUnsupported(ValueError):
    """The booster uses something this evaluator does not model (the caller keeps XGBoost)."""


@dataclass(frozen=True)
class _Tree:
    leaves: list[float]  # leaf values, left to right
    splits: list[tuple[int, float, int]]  # (feature, threshold, mask of its left subtree's leaves)


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
    return _Tree(leaves, splits)


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


def mask_bits(leaves: int) -> int:
    """The narrowest leaf-mask width (16, 32 or 64 bits) for trees of at most ``leaves`` leaves.

    Why narrow: a request reads a few dozen table rows of every booster, and under a web framework they
    come from beyond the core's own caches; the fault model's depth-4 trees fit 16 bits (a quarter of
    the bytes of 64-bit masks)."""
    return next(bits for bits in (16, 32, MAX_LEAVES) if leaves <= bits)


@dataclass(frozen=True)
class BoosterTables:
    """One booster in the kernels' flat layout (inference_server/kernels.py): per feature its sorted
    distinct cuts ``cuts[cut_lo[f]:cut_hi[f]]`` and, from ``row_base[f]``, one table row per prefix of
    them; ``tables[r, t]`` is tree t's mask of reachable leaves (the narrowest unsigned type that holds
    every tree's leaves), ``values[t, leaf]`` its leaf values; ``base`` is added to the margin and
    ``sigmoid`` says whether the prediction is its logistic transform."""

    cuts: np.ndarray
    cut_lo: np.ndarray
    cut_hi: np.ndarray
    row_base: np.ndarray
    tables: np.ndarray
    values: np.ndarray
    base: float
    sigmoid: bool

    def kernel_args(self) -> tuple[Any, ...]:
        """The arrays in the order the kernels take them."""
        return (self.cuts, self.cut_lo, self.cut_hi, self.row_base, self.tables, self.values, self.base,
                self.sigmoid)  # fmt: skip

    def predict_fixed(self, head: np.ndarray, tail: np.ndarray) -> np.ndarray:
        """Predictions for rows ``[head, tail[i]]`` (float64, contiguous, finite)."""
        return kernels.predict_fixed(head, tail, *self.kernel_args())

    @classmethod
    def build(cls, trees: list[_Tree], n_features: int, sigmoid: bool) -> BoosterTables:
        """Tables with ``base`` 0 (CompiledForest calibrates it against the booster)."""
        bits = mask_bits(max(len(tree.leaves) for tree in trees))
        dtype = np.dtype(f"uint{bits}")
        every_leaf = (1 << bits) - 1
        values = np.zeros((len(trees), bits), dtype=np.float32)
        for t, tree in enumerate(trees):
            values[t, : len(tree.leaves)] = tree.leaves
        cuts_per_feature: list[np.ndarray] = []
        tables: list[np.ndarray] = []
        for f in range(n_features):
            # a split x[f] < thr that is false removes its left subtree's leaves
            rows = [
                (thr, t, ~left & every_leaf)
                for t, tree in enumerate(trees)
                for ff, thr, left in tree.splits
                if ff == f
            ]
            thr = np.array([r[0] for r in rows], dtype=np.float32)
            # hist-trained trees share a few hundred cut values per feature: one table row per value
            cuts, slot = np.unique(thr, return_inverse=True)
            table = np.full((len(cuts) + 1, len(trees)), every_leaf, dtype=dtype)
            np.bitwise_and.at(
                table,
                (slot.reshape(-1) + 1, np.array([r[1] for r in rows], dtype=np.intp)),
                np.array([r[2] for r in rows], dtype=dtype),
            )
            tables.append(np.bitwise_and.accumulate(table, axis=0))
            cuts_per_feature.append(cuts)
        n_cuts = np.array([len(c) for c in cuts_per_feature], dtype=np.int64)
        cut_hi = np.cumsum(n_cuts)
        cut_lo = cut_hi - n_cuts
        return cls(
            cuts=np.ascontiguousarray(np.concatenate(cuts_per_feature), dtype=np.float32),
            cut_lo=cut_lo,
            cut_hi=cut_hi,
            row_base=cut_lo + np.arange(n_features, dtype=np.int64),  # n_cuts + 1 rows each
            tables=np.ascontiguousarray(np.vstack(tables)),
            values=values,
            base=0.0,
            sigmoid=sigmoid,
        )


class CompiledForest:
    """Several boosters over the same features, each in its own tables, evaluated by the compiled
    kernels; built only if it reproduces every booster's predictions on the check rows."""

    def __init__(self, boosters: Sequence[xgb.Booster], n_features: int, check: np.ndarray) -> None:
        built = []
        for booster in boosters:
            trees, transform = _booster_trees(booster)
            built.append(BoosterTables.build(trees, n_features, transform == "sigmoid"))
        self.boosters = self._calibrate(boosters, built, np.asarray(check, dtype=np.float32))

    def kernel_args(self) -> tuple[Any, ...]:
        """Every booster's kernel arguments, one booster after the other."""
        return tuple(arg for tables in self.boosters for arg in tables.kernel_args())

    @staticmethod
    def _calibrate(
        boosters: Sequence[xgb.Booster], built: list[BoosterTables], x: np.ndarray
    ) -> list[BoosterTables]:
        """Take the base margin from the booster itself, then require agreement on every check row."""
        x64 = np.ascontiguousarray(x, dtype=np.float64)
        out = []
        for i, (booster, tables) in enumerate(zip(boosters, built, strict=True)):
            sums = replace(tables, sigmoid=False).predict_fixed(_NO_HEAD, x64)
            margin = np.asarray(booster.inplace_predict(x, predict_type="margin", validate_features=False))
            tables = replace(tables, base=float(np.median(margin.astype(np.float64) - sums)))
            want = np.asarray(booster.inplace_predict(x, validate_features=False), dtype=np.float64)
            got = tables.predict_fixed(_NO_HEAD, x64)
            if not np.allclose(got, want, rtol=1e-5, atol=1e-4):
                worst = float(np.max(np.abs(got - want)))
                raise ForestUnsupported(f"booster {i}: compiled predictions differ by {worst:.3g}")
            out.append(tables)
        return out

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        """Predictions of each booster for rows ``x`` (n x n_features, finite)."""
        rows = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
        return [tables.predict_fixed(_NO_HEAD, rows) for tables in self.boosters]

    def predict_fixed(self, head: np.ndarray, tail: np.ndarray) -> list[np.ndarray]:
        """Predictions for rows ``[head, tail[i]]``: the leading features are the same for every row
        (one lot, many settings), so their masks are looked up once."""
        h = np.ascontiguousarray(head, dtype=np.float64)
        t = np.ascontiguousarray(np.atleast_2d(tail), dtype=np.float64)
        return [tables.predict_fixed(h, t) for tables in self.boosters]


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
