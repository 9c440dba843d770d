"""The `model_performance` check inside the backtest: the asset's own computation on the history as run,
judged against the simulator's truth (every craftsman replayed on the AI's very lots).

Synthetic frames make the truth known: an AI that beats a craftsman's replay must pass and agree, one that
loses must fail and agree, and a verdict against the truth must be reported as a disagreement.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import polars as pl

from factory_assets.performance.compute import WindowRule
from factory_core.machine import MODEL_CODE_BASE
from factory_sim.demo.backtest_checks import check_days, judge_day, quarter_verdict

T0 = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
FIRST_DAY = T0.date()
AI_FROM = dt.date(2026, 4, 1)


def _row(pid: int, start: dt.datetime, code: int, quality: float, moisture: float) -> dict[str, Any]:
    who = f"model:v{code - MODEL_CODE_BASE}" if code >= MODEL_CODE_BASE else f"craftsman:{code:02d}"
    return {"line": "CK1", "production_id": pid, "start": start, "lot_moisture": moisture,
            "lot_hardness": 65.0, "lot_density": 1.3, "lot_impurity": 0.6, "set_by": who, "set_by_code": code,
            "qa_quality": quality, "fault_code": 0}  # fmt: skip


def _history(ai_quality: float, craftsman_quality: float) -> tuple[pl.DataFrame, dict[str, dict[int, float]]]:
    """A quarter of one craftsman (code 1) then a quarter of the AI (v1), 8 productions a day; the
    craftsman's replay on the AI's lots scores `craftsman_quality` (the truth)."""
    rows, replay = [], {}
    day = 0
    pid = 0
    while (T0 + dt.timedelta(days=day)).date() < dt.date(2026, 7, 1):
        for k in range(8):
            pid += 1
            start = T0 + dt.timedelta(days=day, hours=k)
            moisture = 4.0 + (pid % 40) / 10
            if start.date() < AI_FROM:
                rows.append(_row(pid, start, 1, craftsman_quality, moisture))
            else:
                rows.append(_row(pid, start, MODEL_CODE_BASE + 1, ai_quality, moisture))
                replay[pid] = craftsman_quality
        day += 1
    frame = pl.DataFrame(rows).with_columns(pl.col("start").cast(pl.Datetime("us", "UTC")))
    return frame, {"anna": replay}


def test_check_runs_every_seventh_day_and_on_the_quarters_last_day() -> None:
    days = check_days(AI_FROM, dt.date(2026, 7, 1))
    assert days[0] == dt.date(2026, 4, 7) and days[-1] == dt.date(2026, 6, 30)
    assert all((b - a).days <= 7 for a, b in itertools.pairwise(days))


def test_an_ai_better_than_the_craftsman_passes_and_agrees_with_the_truth() -> None:
    frame, replay = _history(ai_quality=94.0, craftsman_quality=90.0)
    out = quarter_verdict(frame, AI_FROM, dt.date(2026, 7, 1), FIRST_DAY, replay, line_beats_best=True)
    assert (out["verdict"], out["truth"], out["agrees"]) == ("pass", "pass", True)
    assert out["days_judged"] == len(out["days"]) and out["days_disagreeing_with_truth"] == []
    day = out["days"][-1]
    assert day["best_craftsman"] == "craftsman:01" and day["truth_best_craftsman"] == "anna"
    assert day["truth_ai_quality"] == 94.0 and day["truth_best_craftsman_quality"] == 90.0


def test_an_ai_worse_than_the_craftsman_fails_and_agrees_with_the_truth() -> None:
    frame, replay = _history(ai_quality=85.0, craftsman_quality=90.0)
    out = quarter_verdict(frame, AI_FROM, dt.date(2026, 7, 1), FIRST_DAY, replay, line_beats_best=False)
    assert (out["verdict"], out["truth"], out["agrees"]) == ("fail", "fail", True)
    assert out["days_failed"] == out["days_judged"] > 0


def test_a_verdict_against_the_truth_is_reported_as_a_disagreement() -> None:
    # the craftsman's past record says 90, but replayed on the AI's lots he would have scored 99
    frame, replay = _history(ai_quality=94.0, craftsman_quality=90.0)
    replay = {"anna": dict.fromkeys(replay["anna"], 99.0)}
    out = quarter_verdict(frame, AI_FROM, dt.date(2026, 7, 1), FIRST_DAY, replay, line_beats_best=False)
    assert out["verdict"] == "pass" and out["agrees"] is False
    assert out["days_disagreeing_with_truth"] == [d["day"] for d in out["days"]]


def test_a_new_version_with_few_productions_is_not_judged() -> None:
    frame, replay = _history(ai_quality=94.0, craftsman_quality=90.0)
    day = judge_day(frame, AI_FROM + dt.timedelta(days=2), FIRST_DAY, replay, WindowRule())
    assert day["verdict"] == "not_judged" and day["agrees"] is None  # 24 AI productions < 50
