"""What the platform does at a quarter's end: which history a new model learns from, and the gate that
decides whether it replaces the serving one.

Why one module: the Dagster `quality_model` asset and `factory-sim backtest` must run the same
retraining, or the backtest proves nothing about production. Both call `retrain`.

Window: all history so far (every complete day up to ``as_of``). A model that learned only its own
quarter has seen one season and one crew's habits; the quarter it serves is another season.

Gate: judged on decisions, not forecasts. In production there is no oracle, so the gate estimates
which model's recommendations are better on productions neither model was fitted to: the latest
``GATE_TAIL_DAYS`` of history are held out; a gate candidate is trained on the history before them by
the same recipe; a judge model is fitted on the tail alone; the judge scores both models'
recommendations on the tail's lots (a refused lot counts at the quality its fallback realized). The
candidate is promoted when its judged quality is not worse than the serving model's by more than
``GATE_TOLERANCE``. The deployed candidate is the same recipe refitted on all history.
docs/model.md gives the method and the backtest's verdicts on it.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quality_model import registry
from quality_model.features import LOT_FEATURES
from quality_model.registry import LoadedModel
from quality_model.search.recommender import NoFeasibleSetting
from quality_model.training import TrainedModel, clean, train

GATE_TAIL_DAYS = 14
GATE_TOLERANCE = 0.25  # quality points
MIN_TAIL_ROWS = 200


@dataclass(frozen=True)
class RetrainResult:
    """The candidate (verified, as the server would load it), whether it serves next, and why."""

    candidate: LoadedModel
    trained: TrainedModel
    promoted: bool
    reason: str
    judged: dict[str, Any]
    train_seconds: float


def training_window(frame: pd.DataFrame, as_of: dt.date | None) -> pd.DataFrame:
    """Every usable production that started before ``as_of`` (all history so far), oldest first."""
    rows = clean(frame)
    if as_of is not None:
        cut = pd.Timestamp(as_of, tz="UTC")
        rows = rows[rows["start"] < cut].reset_index(drop=True)
    return rows


def verified(model: TrainedModel, version_number: int) -> LoadedModel:
    """The artefact round trip the server performs: serialize (UBJ + metadata), verify, load."""
    return registry.verify(registry.serialize(model, version_number))


def realized_or_predicted(
    judge: TrainedModel, model: LoadedModel | None, tail: pd.DataFrame
) -> tuple[float, float]:
    """Judged mean quality of ``model``'s decisions on the tail's lots, and its refusal rate.

    Where the model answers, the judge predicts the expected quality of its setting; where it refuses
    (or there is no model), the production's realized quality stands (that is what the fallback did)."""
    lots = tail[[f"lot_{f}" for f in LOT_FEATURES]].to_numpy(dtype=np.float64)
    realized = tail["qa_quality"].to_numpy(dtype=np.float64)
    if model is None:
        return float(realized.mean()), 1.0
    settings = np.full((len(lots), 3), np.nan)
    for i, lot in enumerate(lots):
        try:
            rec = model.recommender.recommend(tuple(float(v) for v in lot))
        except NoFeasibleSetting:
            continue
        settings[i] = list(rec.parameters.values())
    answered = ~np.isnan(settings[:, 0])
    estimate = realized.copy()
    if answered.any():
        x = np.hstack([lots[answered], settings[answered]]).astype(np.float32)
        q = judge.quality.inplace_predict(x, validate_features=False)
        r = judge.fault.inplace_predict(x, validate_features=False)
        estimate[answered] = np.asarray(q, dtype=np.float64) * (1.0 - np.asarray(r, dtype=np.float64))
    return float(estimate.mean()), float(1.0 - answered.mean())


def retrain(
    frame: Any,
    serving: LoadedModel | None,
    *,
    as_of: dt.date | None = None,
    seed: int = 0,
    version_number: int = 1,
    **train_kwargs: Any,
) -> RetrainResult:
    """Train the candidate on all history before ``as_of`` and judge it against ``serving``."""
    started = time.perf_counter()
    rows = training_window(frame, as_of)
    candidate_trained = train(rows, holdout_fraction=0.0, seed=seed, **train_kwargs)
    candidate = verified(candidate_trained, version_number)
    if serving is None:
        return RetrainResult(
            candidate, candidate_trained, True, "first model", {}, time.perf_counter() - started
        )
    tail_start = rows["start"].max() - pd.Timedelta(days=GATE_TAIL_DAYS)
    tail = rows[rows["start"] > tail_start].reset_index(drop=True)
    before = rows[rows["start"] <= tail_start].reset_index(drop=True)
    if len(tail) < MIN_TAIL_ROWS or len(before) < MIN_TAIL_ROWS:
        return RetrainResult(
            candidate, candidate_trained, False,
            f"not promoted: too little history to judge ({len(before)} rows before, {len(tail)} in the tail)",
            {}, time.perf_counter() - started,
        )  # fmt: skip
    gate_model = verified(train(before, holdout_fraction=0.0, seed=seed, **train_kwargs), version_number)
    judge = train(tail, holdout_fraction=0.0, seed=seed + 1, **train_kwargs)
    cand_q, cand_refused = realized_or_predicted(judge, gate_model, tail)
    serv_q, serv_refused = realized_or_predicted(judge, serving, tail)
    judged = {
        "tail_days": GATE_TAIL_DAYS,
        "tail_rows": len(tail),
        "candidate": round(cand_q, 3),
        "serving": round(serv_q, 3),
        "candidate_refused": round(cand_refused, 4),
        "serving_refused": round(serv_refused, 4),
    }
    promoted = cand_q >= serv_q - GATE_TOLERANCE
    verdict = "promoted" if promoted else "not promoted"
    reason = (
        f"{verdict}: judged quality of the candidate's decisions {cand_q:.2f} vs serving {serv_q:.2f} "
        f"on the last {GATE_TAIL_DAYS} days (tolerance {GATE_TOLERANCE})"
    )
    return RetrainResult(
        candidate, candidate_trained, promoted, reason, judged, time.perf_counter() - started
    )
