"""The compiled tree evaluator must predict what XGBoost predicts, or refuse and leave XGBoost in charge."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from quality_model.search.forest import compile_boosters


def _boosters(depth: int, seed: int = 0) -> tuple[list[xgb.Booster], np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 7)).astype(np.float32)
    y = 3 * x[:, 0] + np.sin(2 * x[:, 1]) * x[:, 2] + rng.normal(scale=0.1, size=3000)
    fault = (x[:, 3] + 0.5 * x[:, 4] ** 2 + rng.normal(scale=0.3, size=3000) > 1.2).astype(np.float32)
    common = {"max_depth": depth, "eta": 0.2, "tree_method": "hist", "nthread": 1, "seed": seed}
    quality = xgb.train({**common, "objective": "reg:squarederror"}, xgb.DMatrix(x, y), 120)
    risk = xgb.train({**common, "objective": "binary:logistic"}, xgb.DMatrix(x, fault), 80)
    return [quality, risk], x


def test_compiled_forest_matches_xgboost_inside_and_outside_the_training_range() -> None:
    boosters, x = _boosters(depth=6)
    forest = compile_boosters(boosters, 7, x[:256])
    assert forest is not None
    rng = np.random.default_rng(1)
    rows = np.vstack([x[256:1256], rng.normal(scale=4.0, size=(1000, 7)).astype(np.float32)])
    got = forest.predict(rows)
    for booster, pred in zip(boosters, got, strict=True):
        np.testing.assert_allclose(pred, booster.inplace_predict(rows), rtol=1e-5, atol=1e-5)


def test_fixed_head_rows_equal_full_rows() -> None:
    """One lot, many settings: looking the lot's features up once gives the same predictions."""
    boosters, x = _boosters(depth=5, seed=3)
    forest = compile_boosters(boosters, 7, x[:256])
    assert forest is not None
    head, tails = x[0, :4], x[1:200, 4:]
    full = np.hstack([np.repeat(head[None, :], len(tails), axis=0), tails])
    for a, b in zip(forest.predict_fixed(head, tails), forest.predict(full), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_trees_beyond_the_evaluator_are_refused() -> None:
    """Deep trees (more leaves than a 64-bit mask) and non-finite check rows keep XGBoost predicting."""
    deep, x = _boosters(depth=9, seed=5)
    assert compile_boosters(deep, 7, x[:256]) is None
    shallow, x = _boosters(depth=4, seed=6)
    bad = x[:16].copy()
    bad[0, 0] = np.nan
    assert compile_boosters(shallow, 7, bad) is None
