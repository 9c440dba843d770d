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
from scipy.spatial import cKDTree

from quality_model import registry
from quality_model.features import COLUMN_OF, LOT_FEATURES, PARAM_FEATURES
from quality_model.registry import LoadedModel
from quality_model.search.recommender import NoFeasibleSetting
from quality_model.training import TrainedModel, clean, train

GATE_TAIL_DAYS = 14
GATE_TAIL_FRACTION = 0.2  # a history shorter than GATE_TAIL_DAYS / GATE_TAIL_FRACTION: its latest 20 %
GATE_TOLERANCE = 0.25  # quality points
MIN_TAIL_ROWS = 100


COMPARABLE_LOTS = 5  # a craftsman's quality on a lot: mean QA of their productions on the 5 nearest lots
MIN_CRAFTSMAN_ROWS = 50
MIN_REFERENCE_ROWS = 30  # productions in the tail to compare on


@dataclass(frozen=True)
class RetrainResult:
    """The candidate (verified, as the server would load it), whether it serves next, and why, and the
    recipe against the craftsmen on the gate's tail (what `model_beats_best_craftsman` judges)."""

    candidate: LoadedModel
    trained: TrainedModel
    promoted: bool
    reason: str
    judged: dict[str, Any]
    train_seconds: float
    versus_craftsmen: dict[str, Any]


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
    lots = _lots(tail)
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
        estimate[answered] = _judged(judge, lots[answered], settings[answered])
    return float(estimate.mean()), float(1.0 - answered.mean())


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on a candidate against the serving model, with the judged figures."""

    promoted: bool
    reason: str
    judged: dict[str, Any]


def tail_split(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History before the gate's tail, and the tail: the latest GATE_TAIL_DAYS of productions, or the
    latest GATE_TAIL_FRACTION of them when the history is too short for that (``rows`` oldest first)."""
    span = rows["start"].max() - rows["start"].min()
    if span >= pd.Timedelta(days=GATE_TAIL_DAYS / GATE_TAIL_FRACTION):
        tail_start = rows["start"].max() - pd.Timedelta(days=GATE_TAIL_DAYS)
        in_tail = rows["start"] > tail_start
    else:
        in_tail = np.arange(len(rows)) >= round(len(rows) * (1.0 - GATE_TAIL_FRACTION))
    return rows[~in_tail].reset_index(drop=True), rows[in_tail].reset_index(drop=True)


def gate_candidate(rows: pd.DataFrame, seed: int = 0, **train_kwargs: Any) -> TrainedModel | None:
    """The candidate's recipe trained on history before the tail, the tail as its held-out rows (what
    the gate judges, and an honest evaluation of the recipe); None with too little history."""
    before, tail = tail_split(rows)
    if len(tail) < MIN_TAIL_ROWS or len(before) < MIN_TAIL_ROWS:
        return None
    model = train(before, holdout_fraction=0.0, seed=seed, **train_kwargs)
    model.holdout = tail
    return model


def judge(
    candidate: TrainedModel | None,
    serving: LoadedModel | None,
    truth: pd.DataFrame,
    seed: int = 0,
    **train_kwargs: Any,
) -> Verdict:
    """Compare the decisions of the gate candidate (trained before the tail) and of the serving model on
    the tail's lots, judged by a model fitted on the tail's true outcomes (``truth``: all history, its
    QA as recorded)."""
    if serving is None:
        return Verdict(True, "first model", {})
    if candidate is None:
        return Verdict(False, "not promoted: too little history before and in the gate's tail to judge", {})
    _, tail = tail_split(clean(truth))
    judge_model = train(tail, holdout_fraction=0.0, seed=seed + 1, **train_kwargs)
    gate_model = verified(candidate, 1)
    cand_q, cand_refused = realized_or_predicted(judge_model, gate_model, tail)
    serv_q, serv_refused = realized_or_predicted(judge_model, serving, tail)
    judged = {
        "tail_days": GATE_TAIL_DAYS,
        "tail_rows": len(tail),
        "candidate": round(cand_q, 3),
        "serving": round(serv_q, 3),
        "serving_version": serving.version,
        "candidate_refused": round(cand_refused, 4),
        "serving_refused": round(serv_refused, 4),
        "tolerance": GATE_TOLERANCE,
    }
    promoted = cand_q >= serv_q - GATE_TOLERANCE
    reason = (
        f"{'promoted' if promoted else 'not promoted'}: judged quality of the candidate's decisions "
        f"{cand_q:.2f} vs serving {serv_q:.2f} on the last {GATE_TAIL_DAYS} days (tolerance {GATE_TOLERANCE})"
    )
    return Verdict(promoted, reason, judged)


def retrain(
    frame: Any,
    serving: LoadedModel | None,
    *,
    as_of: dt.date | None = None,
    seed: int = 0,
    version_number: int = 1,
    **train_kwargs: Any,
) -> RetrainResult:
    """What a quarter's end does: train the candidate on all history before ``as_of`` and judge it
    against ``serving`` (the backtest calls this; the Dagster asset runs the same steps around the
    registry's publish)."""
    started = time.perf_counter()
    rows = training_window(frame, as_of)
    trained = train(rows, holdout_fraction=0.0, seed=seed, **train_kwargs)
    candidate = verified(trained, version_number)
    gate = gate_candidate(rows, seed, **train_kwargs)
    verdict = judge(gate, serving, rows, seed, **train_kwargs)
    versus = versus_craftsmen(gate, rows, seed, **train_kwargs)
    return RetrainResult(
        candidate, trained, verdict.promoted, verdict.reason, verdict.judged, time.perf_counter() - started,
        versus,
    )  # fmt: skip


def _lots(frame: pd.DataFrame) -> np.ndarray:
    return frame[[COLUMN_OF[f] for f in LOT_FEATURES]].to_numpy(dtype=np.float64)


def _cross_fitted_judges(tail: pd.DataFrame, seed: int, **train_kwargs: Any) -> list[TrainedModel]:
    """Two judges, each fitted on alternate rows of the tail: each row is judged by the one that did not
    see it (so a craftsman's own productions are not judged in-sample)."""
    return [
        train(
            tail.iloc[fold::2].reset_index(drop=True),
            holdout_fraction=0.0,
            seed=seed + 2 + fold,
            **train_kwargs,
        )
        for fold in (0, 1)
    ]


def _judged(judge: TrainedModel, lots: np.ndarray, settings: np.ndarray) -> np.ndarray:
    x = np.hstack([lots, settings]).astype(np.float32)
    q = np.asarray(judge.quality.inplace_predict(x, validate_features=False), dtype=np.float64)
    r = np.asarray(judge.fault.inplace_predict(x, validate_features=False), dtype=np.float64)
    return q * (1.0 - r)


def versus_craftsmen(
    candidate: TrainedModel | None, truth: pd.DataFrame, seed: int = 0, **train_kwargs: Any
) -> dict[str, Any]:
    """The recipe's decisions against the best craftsman, on lots of the gate's tail the candidate never
    saw: what `model_beats_best_craftsman` judges.

    Reference productions R: the best craftsman's own productions in the tail when there are enough (a
    line the craftsmen run), else the model's (a line the model runs; the craftsmen then only catch its
    refusals). The candidate's quality on R's lots = R's realized quality + the judges' rating of the
    candidate's settings - their rating of R's own settings (cross-fitted judges: no row is rated by a
    judge that saw it). Why the difference: a judge fitted on a few weeks of mostly other settings rates
    good settings low (measured: 81 for decisions that realized 95); the same judges on the same lots
    cancel that bias, where comparing a judged number with a realized one does not.
    The craftsmen's side: each craftsman's realized quality on comparable lots (for each R lot, the mean
    QA of their productions on the COMPARABLE_LOTS nearest lots of all history), for craftsmen with at
    least MIN_CRAFTSMAN_ROWS productions. ``passed``: the candidate is at least the best of them (None:
    too little history)."""
    if candidate is None:
        return {"passed": None, "reason": "too little history before and in the gate's tail"}
    rows = clean(truth)
    _, tail = tail_split(rows)
    lots = _lots(rows)
    scale = np.maximum(lots.std(axis=0), 1e-9)
    tail_lots = _lots(tail)
    names = tail["set_by"].astype(str).to_numpy()
    people = rows[~rows["set_by"].astype(str).str.startswith("model")]
    crew = {
        name: own
        for name, own in people.groupby(people["set_by"].astype(str))
        if len(own) >= MIN_CRAFTSMAN_ROWS
    }
    if not crew:
        return {"passed": None, "reason": "no craftsman with enough productions in history"}

    def comparable(on: np.ndarray) -> dict[str, float]:
        out = {}
        for name, own in crew.items():
            k = min(COMPARABLE_LOTS, len(own))
            _, near = cKDTree(_lots(own) / scale).query(tail_lots[on] / scale, k=k)
            quality = own["qa_quality"].to_numpy(dtype=np.float64)[np.asarray(near).reshape(len(on), k)]
            out[name] = float(quality.mean())
        return out

    everyone = comparable(np.arange(len(tail)))
    best = max(everyone, key=everyone.__getitem__)
    reference = np.flatnonzero(names == best)
    reference_kind = "best craftsman"
    if len(reference) < MIN_REFERENCE_ROWS:
        reference = np.flatnonzero(np.char.startswith(names.astype(str), "model"))
        reference_kind = "model"
    if len(reference) < MIN_REFERENCE_ROWS:
        return {
            "passed": None,
            "reason": f"fewer than {MIN_REFERENCE_ROWS} reference productions in the tail",
        }
    judges = _cross_fitted_judges(tail, seed, **train_kwargs)
    model = verified(candidate, 1)
    settings = tail[[COLUMN_OF[p] for p in PARAM_FEATURES]].to_numpy(dtype=np.float64)
    realized = tail["qa_quality"].to_numpy(dtype=np.float64)
    estimate, refused = [], 0
    for i in reference:
        judge = judges[1 - i % 2]  # the judge that did not see row i
        own = _judged(judge, tail_lots[i][None, :], settings[i][None, :])[0]
        try:
            rec = model.recommender.recommend(tuple(float(v) for v in tail_lots[i]))
        except NoFeasibleSetting:
            refused += 1  # the operator decides: what happened stands
            estimate.append(realized[i])
            continue
        ours = _judged(judge, tail_lots[i][None, :], np.array([list(rec.parameters.values())]))[0]
        estimate.append(realized[i] + ours - own)
    craftsmen = comparable(reference)
    model_q = float(np.mean(estimate))
    return {
        "passed": bool(model_q >= craftsmen[best]),
        "model": round(model_q, 3),
        "best_craftsman": best,
        "best_craftsman_quality": round(craftsmen[best], 3),
        "reference": reference_kind,
        "lots": len(reference),
        "model_refused": refused,
        "craftsmen": {k: round(v, 3) for k, v in sorted(craftsmen.items())},
    }
