"""Retraining as the platform runs it at a quarter's end: all history, the gate that judges decisions,
and the comparison with the craftsmen that `model_beats_best_craftsman` reads."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from factory_sim.productions import productions_frame
from quality_model import retraining
from quality_model.training import train


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """Six weeks of a line run by its craftsmen."""
    return retraining.training_window(productions_frame(42.0, line="G1", seed=3), None)


@pytest.fixture(scope="module")
def serving(history: pd.DataFrame) -> retraining.LoadedModel:
    return retraining.verified(train(history, holdout_fraction=0.0, seed=0), 1)


def test_training_window_is_all_history_before_the_cut(history: pd.DataFrame) -> None:
    cut = dt.date(2026, 2, 1)
    rows = retraining.training_window(history, cut)
    assert len(rows) > 0 and rows["start"].min() == history["start"].min()
    assert rows["start"].max() < pd.Timestamp(cut, tz="UTC") <= history["start"].max()


def test_gate_tail_is_the_last_two_weeks_or_a_fifth_of_a_short_history(history: pd.DataFrame) -> None:
    before, tail = retraining.tail_split(history)  # 42 days < 70: the latest 20 %
    assert (
        len(tail) == len(history) - round(len(history) * 0.8) and before["start"].max() <= tail["start"].min()
    )
    long = pd.concat(
        [history, history.assign(start=history["start"] + pd.Timedelta(days=42))], ignore_index=True
    )
    before, tail = retraining.tail_split(long)
    assert tail["start"].min() > long["start"].max() - pd.Timedelta(days=14) >= before["start"].max()


def test_first_model_is_promoted_without_a_judge(history: pd.DataFrame) -> None:
    assert retraining.judge(None, None, history).promoted is True


def test_gate_rejects_a_candidate_trained_on_shuffled_quality(
    history: pd.DataFrame, serving: retraining.LoadedModel
) -> None:
    """The drill: QA scores permuted across rows teach a model nothing; the judge, fitted on the true
    outcomes of the tail, rates its decisions below the serving model's and the gate keeps the latter."""
    rng = np.random.default_rng(0)
    shuffled = history.assign(qa_quality=rng.permutation(history["qa_quality"].to_numpy()))
    verdict = retraining.judge(retraining.gate_candidate(shuffled), serving, history)
    assert verdict.promoted is False, verdict.reason
    assert verdict.judged["candidate"] < verdict.judged["serving"] - retraining.GATE_TOLERANCE
    assert verdict.reason.startswith("not promoted: judged quality of the candidate's decisions")


def test_gate_promotes_a_candidate_no_worse_than_serving(
    history: pd.DataFrame, serving: retraining.LoadedModel
) -> None:
    verdict = retraining.judge(retraining.gate_candidate(history), serving, history)
    assert verdict.promoted is True, verdict.reason
    assert {"candidate", "serving", "tail_rows", "serving_version"} <= set(verdict.judged)


def test_versus_craftsmen_names_the_best_and_compares_on_the_same_lots(history: pd.DataFrame) -> None:
    versus = retraining.versus_craftsmen(retraining.gate_candidate(history), history)
    assert versus["reference"] == "best craftsman" and versus["lots"] >= retraining.MIN_REFERENCE_ROWS
    assert versus["best_craftsman"] == max(versus["craftsmen"], key=versus["craftsmen"].__getitem__)
    assert versus["passed"] is (versus["model"] >= versus["best_craftsman_quality"])


def test_versus_craftsmen_refuses_to_judge_without_history() -> None:
    assert retraining.versus_craftsmen(None, pd.DataFrame())["passed"] is None
