"""Train and evaluate the forward models from the per-production table (pandas or polars frame).

Why here and not in Dagster: the `quality_model` asset only glues (read table -> train -> evaluate ->
registry.publish); everything that decides what a model is lives next to the code that serves it.
Forward models: an XGBoost regressor of QA quality for productions without a fault, and an XGBoost
classifier of fault risk; both on (lot figures, setting). The search metadata (support set, prior
policy, parameter ranges) is learned here too and shipped inside the artefact.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.spatial import cKDTree

from quality_model.features import COLUMN_OF, FEATURES, PARAM_BOUNDS, PARAM_FEATURES, SCHEMA_VERSION
from quality_model.search.recommender import SUPPORT_NEIGHBOURS, NoFeasibleSetting, Recommender, lot_design

REQUIRED_COLUMNS = ("line", "production_id", "start", "qa_quality", "fault", *COLUMN_OF.values())
QUALITY_PARAMS: dict[str, Any] = {
    "objective": "reg:squarederror",
    "tree_method": "hist",
    "max_depth": 6,
    "eta": 0.12,
    "subsample": 0.8,
    "min_child_weight": 4,
    "lambda": 1.0,
}
FAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 0.8,
    "min_child_weight": 2,
    "eval_metric": "logloss",
}
PRIOR_TEMPERATURE = 2.0  # quality points: weight of a row in the prior = exp(min(q - q90(lot), 0) / T)
PRIOR_REFERENCE_PARAMS: dict[str, Any] = {
    "objective": "reg:quantileerror",
    "quantile_alpha": 0.9,
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.2,
}
PRIOR_REFERENCE_ROUNDS = 60
MAX_SUPPORT = 4000
SMOKE_ROWS = 8
# The trees' predictions count (fault veto, low_predicted_quality) where a lot is this close to history, in
# units of history's own q99 nearest-lot distance. 1.0, formerly 2.0: on the first quarter a model serves
# (spring lots, winter history) the trees at 2.0 vetoed or refused 35-136 lots a quarter just beyond
# history, which the prior sets well and the crew on shift does not; at 1.0, 0-6 remain and no answer got
# worse (docs/model.md, "Where the trees judge"; benchmarks/study_tree_support.py).
TREE_SUPPORT_FACTOR = 1.0
LEVERAGE_REFUSE_RATIO = 25.0  # out_of_support beyond this multiple of the history's q99.9 leverage
# out_of_support beyond this multiple of history's own q99 nearest-lot distance. Measured with the model a
# line first serves (a winter of history) on 3,000 lots drawn over every lot the API admits
# (benchmarks/study_far_lots.py, seeds 42 and 7): its answers' fault risk stays below 0.01 % at every
# distance and their expected quality falls from 93-94 (below 2x) to 79 (4-5x) and 74 (5-6x), while the
# crew on shift, who take a refused lot, expect 19-21 there with a fault risk of 46-51 %; beyond 6x one
# seed's answers fall to 65 with 27 % severe. Formerly 4.0, set from poor answers alone.
LOT_DISTANCE_REFUSE_RATIO = 6.0
LOW_QUALITY_THRESHOLD = 30.0  # low_predicted_quality when (q - k * uncertainty) * (1 - risk) is below
UNCERTAINTY_K = 0.0
UNCERTAINTY_NEIGHBOURS = 8


class TrainingDataError(ValueError):
    """The per-production frame cannot train a model (message names the column and the rule)."""


@dataclass
class TrainedModel:
    """Boosters + metadata (version fields filled in by registry.publish) + the held-out rows."""

    quality: xgb.Booster
    fault: xgb.Booster
    metadata: dict[str, Any]
    holdout: pd.DataFrame = field(repr=False)
    train_seconds: float = 0.0

    def recommender(self) -> Recommender:
        return Recommender(self.quality, self.fault, self.metadata)


def to_pandas(df: Any) -> pd.DataFrame:
    """Accept a pandas or polars frame (polars converted column by column: no pyarrow needed)."""
    if isinstance(df, pd.DataFrame):
        return df
    if hasattr(df, "get_column") and hasattr(df, "columns"):
        return pd.DataFrame({c: df.get_column(c).to_numpy() for c in df.columns})
    raise TrainingDataError(f"df: expected a pandas or polars DataFrame, got {type(df).__name__}")


def clean(df: Any) -> pd.DataFrame:
    """Rows usable for training: QA published, finite features; sorted by start (time split)."""
    frame = to_pandas(df)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"df: missing required column(s) {missing}")
    frame = frame.loc[frame["qa_quality"].notna()].copy()
    frame["start"] = pd.to_datetime(frame["start"], utc=True)  # polars' numpy export drops the tz
    feats = frame[[COLUMN_OF[f] for f in FEATURES]].astype("float64")
    ok = np.isfinite(feats.to_numpy()).all(axis=1) & np.isfinite(
        frame["qa_quality"].astype("float64").to_numpy()
    )
    frame = frame.loc[ok].sort_values(["start", "production_id"], kind="stable").reset_index(drop=True)
    return frame


def matrix(frame: pd.DataFrame) -> np.ndarray:
    """Feature matrix in FEATURES order (float32, what XGBoost predicts on)."""
    return frame[[COLUMN_OF[f] for f in FEATURES]].to_numpy(dtype=np.float32)


def faulted(frame: pd.DataFrame) -> np.ndarray:
    """1 where the production ended in a fault (fault column non-null and non-empty)."""
    col = frame["fault"]
    return (col.notna() & (col.astype("string").fillna("") != "")).to_numpy(dtype=np.float32)


def fit_prior(
    x: np.ndarray, quality: np.ndarray, seed: int = 0, nthread: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Outcome-weighted policy: weighted least squares of setting on quadratic lot terms.

    A row's weight is exp(min(q - q90(lot), 0) / T), q90(lot) being the 90th percentile of quality
    reached on similar lots (an XGBoost quantile model on the lot figures alone): the best productions
    *for that kind of lot* dominate. Weighting against the best quality anywhere instead starves hard
    lots (high impurity, say), where nobody reaches the global best, and the quadratic then
    extrapolates badly exactly there. Measured with the backtest (docs/model.md): the prior, not the
    trees' argmax, is what holds up a season ahead; the trees veto and report.
    """
    lots = x[:, :4].astype(np.float32)
    reference = xgb.train(
        {**PRIOR_REFERENCE_PARAMS, "seed": seed, "nthread": nthread},
        xgb.DMatrix(lots, label=quality, nthread=nthread),
        num_boost_round=PRIOR_REFERENCE_ROUNDS,
    )
    q90 = reference.inplace_predict(lots).astype(np.float64)
    w = np.exp(np.minimum(quality - q90, 0.0) / PRIOR_TEMPERATURE)
    design = lot_design(x[:, :4].astype(np.float64))
    sw = np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(design * sw, x[:, 4:].astype(np.float64) * sw, rcond=None)
    resid = x[:, 4:] - design @ coef
    std = np.sqrt((w[:, None] * resid**2).sum(axis=0) / w.sum())
    floor = np.array([0.5, 0.25, 0.75])  # never search a degenerate lattice
    return coef, np.maximum(std, floor)


def support_set(
    x: np.ndarray, mean: np.ndarray, scale: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Deterministic subsample of historical rows (and their indices) + the support distance under which
    a (lot, setting) counts as seen (1.5 x the 99th percentile of held-back rows' distances, measured as
    the recommender does) + the 99th percentile of held-back lots' distance to the nearest support lot
    (the scale of "a lot like those in history")."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x), size=min(MAX_SUPPORT, len(x)), replace=False))
    support = x[idx].astype(np.float64)
    rest = np.setdiff1d(np.arange(len(x)), idx)
    in_sample = len(rest) < 50
    probe = x if in_sample else x[rest]
    probe = probe[rng.choice(len(probe), size=min(2000, len(probe)), replace=False)]
    norm = (support - mean) / scale
    pn = (probe - mean) / scale
    k = min(SUPPORT_NEIGHBOURS + 1, len(support))
    lot_dist, near = cKDTree(norm[:, :4]).query(pn[:, :4], k=k)
    d2 = ((pn[:, None, :] - norm[near]) ** 2).sum(axis=2)
    d2.sort(axis=1)
    nn = np.sqrt(d2[:, 1] if in_sample else d2[:, 0])
    lot_nn = lot_dist[:, 1] if in_sample else lot_dist[:, 0]
    return support, idx, float(1.5 * np.quantile(nn, 0.99)), max(float(np.quantile(lot_nn, 0.99)), 1e-6)


def leverage_scale(lots: np.ndarray) -> tuple[np.ndarray, float]:
    """C^-1 of the prior's design rows (C = D'D / n) and the 99.9th percentile of their leverage
    d' C^-1 d: a lot whose leverage is many times that lies where the quadratic prior extrapolates."""
    design = lot_design(lots.astype(np.float64))
    inv = np.linalg.pinv(design.T @ design / len(design))
    leverage = np.einsum("ij,jk,ik->i", design, inv, design)
    return inv, float(np.quantile(leverage, 0.999))


def out_of_fold_residuals(x: np.ndarray, q: np.ndarray, rounds: int, seed: int, nthread: int) -> np.ndarray:
    """QA quality minus the quality model's prediction for each fault-free row, from a model that did
    not see the row (two folds, alternate rows): the honest size of the model's error near a point."""
    out = np.empty(len(x), dtype=np.float64)
    for fold in (0, 1):
        fit = np.arange(len(x)) % 2 != fold
        booster = _fit(QUALITY_PARAMS, x[fit], q[fit], rounds, seed + 1 + fold, nthread)
        out[~fit] = q[~fit] - booster.inplace_predict(x[~fit], validate_features=False)
    return out


def _fit(
    params: dict[str, Any], x: np.ndarray, y: np.ndarray, rounds: int, seed: int, nthread: int
) -> xgb.Booster:
    dtrain = xgb.DMatrix(x, label=y, feature_names=list(FEATURES), nthread=nthread)
    return xgb.train({**params, "seed": seed, "nthread": nthread}, dtrain, num_boost_round=rounds)


def train(
    df: Any,
    *,
    holdout_fraction: float = 0.2,
    quality_rounds: int = 150,
    fault_rounds: int = 150,
    fault_risk_threshold: float = 0.05,
    indifference_margin: float = 3.0,
    seed: int = 0,
    nthread: int = 1,
) -> TrainedModel:
    """Train both forward models on the earliest (1 - holdout_fraction) of the rows (time split)."""
    started = time.perf_counter()
    if not 0.0 <= holdout_fraction < 0.9:
        raise TrainingDataError(f"holdout_fraction: must be in [0, 0.9), got {holdout_fraction}")
    frame = clean(df)
    if len(frame) < 50:
        raise TrainingDataError(f"df: {len(frame)} usable rows (QA published, finite features); need >= 50")
    n_train = max(50, round(len(frame) * (1.0 - holdout_fraction)))
    train_rows, holdout = frame.iloc[:n_train], frame.iloc[n_train:].reset_index(drop=True)
    x, fault = matrix(train_rows), faulted(train_rows)
    q = train_rows["qa_quality"].to_numpy(dtype=np.float32)
    ok = fault == 0
    if ok.sum() < 20:
        raise TrainingDataError("df: fewer than 20 productions without a fault; cannot learn quality")
    quality_booster = _fit(QUALITY_PARAMS, x[ok], q[ok], quality_rounds, seed, nthread)
    fault_booster = _fit(FAULT_PARAMS, x, fault, fault_rounds, seed, nthread)
    mean = x.mean(axis=0).astype(np.float64)
    scale = np.maximum(x.std(axis=0).astype(np.float64), 1e-6)
    support, support_idx, threshold, lot_threshold = support_set(x, mean, scale, seed)
    coef, resid_std = fit_prior(x[ok], q[ok].astype(np.float64), seed, nthread)
    lev_inv, lev_q999 = leverage_scale(x[ok][:, :4])
    residuals = np.full(len(x), np.nan)
    residuals[ok] = out_of_fold_residuals(x[ok], q[ok], quality_rounds, seed, nthread)
    support_residuals = residuals[support_idx]
    support_faulted = fault[support_idx] == 1
    support_quality = np.where(support_faulted, 0.0, q[support_idx].astype(np.float64))
    lo = np.quantile(x[:, 4:], 0.005, axis=0)
    hi = np.quantile(x[:, 4:], 0.995, axis=0)
    ranges = {
        p: [float(max(lo[k], PARAM_BOUNDS[p][0])), float(min(hi[k], PARAM_BOUNDS[p][1]))]
        for k, p in enumerate(PARAM_FEATURES)
    }
    smoke = x[np.linspace(0, len(x) - 1, SMOKE_ROWS).astype(int)]
    starts = train_rows["start"]
    meta: dict[str, Any] = {
        "format": "factory-quality-model",
        "schema_version": SCHEMA_VERSION,
        "version": None,
        "version_number": None,
        "lines": sorted(str(v) for v in train_rows["line"].unique()),
        "training_window": {"start": starts.min().isoformat(), "end": starts.max().isoformat()},
        "rows": {"train": len(train_rows), "holdout": len(holdout), "faults": int(fault.sum())},
        "feature_schema": {"features": list(FEATURES), "dtype": "float32", "columns": dict(COLUMN_OF)},
        "xgboost": {"version": xgb.__version__, "quality": QUALITY_PARAMS, "fault": FAULT_PARAMS},
        "search": {
            "feature_mean": mean.tolist(),
            "feature_scale": scale.tolist(),
            "support": np.round(support, 5).tolist(),
            "support_threshold": threshold,
            "fault_risk_threshold": fault_risk_threshold,
            "indifference_margin": indifference_margin,
            "selection": "prior_first",
            "tree_lot_threshold": TREE_SUPPORT_FACTOR * lot_threshold,
            "lot_distance_q99": lot_threshold,
            "leverage_inv": lev_inv.tolist(),
            "leverage_q999": lev_q999,
            "leverage_refuse_ratio": LEVERAGE_REFUSE_RATIO,
            "lot_distance_refuse_ratio": LOT_DISTANCE_REFUSE_RATIO,
            "low_quality_threshold": LOW_QUALITY_THRESHOLD,
            "uncertainty_k": UNCERTAINTY_K,
            "uncertainty_neighbours": UNCERTAINTY_NEIGHBOURS,
            "support_residuals": [
                None if not np.isfinite(v) else round(float(v), 4) for v in support_residuals
            ],
            "support_quality": [round(float(v), 2) for v in support_quality],
            "support_faulted": [int(v) for v in support_faulted],
            "prior_coef": coef.tolist(),
            "prior_resid_std": resid_std.tolist(),
            "param_ranges": ranges,
        },
        "smoke": {
            "inputs": smoke.astype(float).tolist(),
            "quality": quality_booster.inplace_predict(smoke).astype(float).tolist(),
            "fault": fault_booster.inplace_predict(smoke).astype(float).tolist(),
        },
        "metrics": {},
    }
    model = TrainedModel(quality_booster, fault_booster, meta, holdout)
    model.train_seconds = time.perf_counter() - started
    return model


def quality_errors(model: TrainedModel | Recommender, frame: pd.DataFrame) -> dict[str, float]:
    """RMSE / MAE of the quality model on fault-free rows of ``frame`` (the promotion yardstick)."""
    rec = model if isinstance(model, Recommender) else model.recommender()
    ok = faulted(frame) == 0
    if ok.sum() == 0:
        return {"quality_rmse": math.nan, "quality_mae": math.nan, "n": 0}
    x = matrix(frame)[ok]
    err = rec.quality.inplace_predict(x) - frame["qa_quality"].to_numpy(dtype=np.float64)[ok]
    return {
        "quality_rmse": float(np.sqrt(np.mean(err**2))),
        "quality_mae": float(np.mean(np.abs(err))),
        "n": int(ok.sum()),
    }


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """Rank AUC (Mann-Whitney); NaN when only one class is present."""
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos == 0 or neg == 0:
        return math.nan
    ranks = pd.Series(p).rank().to_numpy()
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability table of the fault classifier: mean predicted vs observed rate per probability bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            out.append({"bin_low": float(edges[b]), "bin_high": float(edges[b + 1]), "n": int(sel.sum()),
                        "mean_predicted": float(p[sel].mean()), "observed_rate": float(y[sel].mean())})  # fmt: skip
    return out


def plot_png(actual: np.ndarray, predicted: np.ndarray, title: str) -> bytes:
    """Predicted-vs-actual scatter as PNG bytes (matplotlib Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), dpi=80)
    ax = fig.add_subplot()
    ax.scatter(actual, predicted, s=4, alpha=0.4)
    lim = [0.0, 100.0]
    ax.plot(lim, lim, color="grey", linewidth=1)
    ax.set_xlabel("actual QA quality")
    ax.set_ylabel("predicted QA quality")
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def evaluate(model: TrainedModel, holdout: Any | None = None, max_replay: int = 1500) -> dict[str, Any]:
    """Held-out report: forward-model errors, fault calibration, feature importance, and a replay.

    Replay: for each held-out production, the predicted expected quality under the recommendation vs
    under the operator's actual setting (both judged by the same forward models), next to the actual
    QA score. Returns a JSON-able dict plus ``plot_png`` (bytes, predicted vs actual); the scalar
    metrics are also recorded in the model's metadata (so they travel inside the artefact).
    """
    frame = model.holdout if holdout is None else clean(holdout)
    if len(frame) == 0:
        raise TrainingDataError("holdout: no usable rows to evaluate on")
    rec = model.recommender()
    x = matrix(frame)
    y_fault = faulted(frame)
    q_pred = rec.quality.inplace_predict(x).astype(np.float64)
    r_pred = rec.fault.inplace_predict(x).astype(np.float64)
    actual = frame["qa_quality"].to_numpy(dtype=np.float64)
    ok = y_fault == 0
    errors = quality_errors(rec, frame)
    replay = frame.iloc[np.linspace(0, len(frame) - 1, min(max_replay, len(frame))).astype(int)]
    xr = matrix(replay)
    operator_expected = rec.quality.inplace_predict(xr) * (1.0 - rec.fault.inplace_predict(xr))
    recommended, infeasible = [], 0
    for lot in xr[:, :4].astype(np.float64):
        try:
            recommended.append(rec.recommend(tuple(lot)).predicted_quality)
        except NoFeasibleSetting:
            infeasible += 1
            recommended.append(math.nan)
    rec_q = np.asarray(recommended)
    fine = np.isfinite(rec_q)
    eps = 1e-6
    logloss = -np.mean(y_fault * np.log(r_pred + eps) + (1 - y_fault) * np.log(1 - r_pred + eps))
    gain = rec.quality.get_score(importance_type="gain")
    report: dict[str, Any] = {
        "holdout_rows": len(frame),
        **errors,
        "quality_r2": float(1 - np.mean((q_pred[ok] - actual[ok]) ** 2) / max(np.var(actual[ok]), eps))
        if ok.any()
        else math.nan,
        "fault_rate": float(y_fault.mean()),
        "fault_logloss": float(logloss),
        "fault_brier": float(np.mean((r_pred - y_fault) ** 2)),
        "fault_auc": _auc(y_fault, r_pred),
        "fault_calibration": calibration(y_fault, r_pred),
        "feature_importance_gain": {k: float(v) for k, v in sorted(gain.items())},
        "replay": {
            "rows": len(replay),
            "infeasible": infeasible,
            "mean_actual_quality": float(replay["qa_quality"].mean()),
            "mean_predicted_operator": float(operator_expected[fine].mean()) if fine.any() else math.nan,
            "mean_predicted_recommended": float(rec_q[fine].mean()) if fine.any() else math.nan,
            "predicted_uplift": float((rec_q[fine] - operator_expected[fine]).mean())
            if fine.any()
            else math.nan,
        },
    }
    model.metadata["metrics"] = {k: v for k, v in report.items() if k != "fault_calibration"}
    report["plot_png"] = plot_png(actual[ok], q_pred[ok], "held-out: predicted vs actual (no fault)")
    return report
