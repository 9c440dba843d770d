"""The `model_performance` check, run inside the backtest and held to the simulator's truth.

Why: the check is what production has instead of an oracle (the AI's realized quality against each
craftsman's on comparable lots, `factory_assets.performance.compute`). The backtest runs the same pure
computation the asset runs, with the same rules, on the history it produced, at every `every_days`-th day
of a model-run quarter and on its last day, and compares each verdict with the truth the simulator knows:
the judged version's realized quality on the window's productions against every craftsman replayed on
those very lots with the same outcome draws.

A quarter's verdict is `fail` if any judged day failed, `pass` if at least one day was judged and none
failed, else `not_judged`; it agrees with the backtest when `pass` goes with a quarter in which the line
was at least the best craftsman, and `fail` with one in which it was not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from factory_assets.performance import compute

EVERY_DAYS = 7


def check_days(first: dt.date, end: dt.date, every_days: int = EVERY_DAYS) -> list[dt.date]:
    """Days of [first, end) on which the check is run: every `every_days`-th day and the last one."""
    days = [first + dt.timedelta(days=i) for i in range(every_days - 1, (end - first).days, every_days)]
    last = end - dt.timedelta(days=1)
    return days if days and days[-1] == last else [*days, last]


def history_frame(frame: Any) -> pl.DataFrame:
    """The backtest's production table (pandas) in the columns and types the check reads."""
    return compute.productions_for_matching(pl.from_pandas(frame))


def _rows_between(frame: pl.DataFrame, first: dt.date, last: dt.date) -> pl.DataFrame:
    lo = dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC)
    hi = dt.datetime(last.year, last.month, last.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    return frame.filter((pl.col("start") >= lo) & (pl.col("start") < hi))


def judge_day(
    frame: pl.DataFrame, day: dt.date, earliest: dt.date, replayed: Mapping[str, Mapping[int, float]],
    rule: compute.WindowRule,
) -> dict[str, Any]:  # fmt: skip
    """The check's verdict on `day` (as the asset computes it) and the truth on the same productions."""
    ai_start = compute.window_start(day.isoformat(), rule.window_days)
    window = _rows_between(frame, ai_start, day)
    ai_rows = window.filter(pl.col("set_by_code") >= compute.MODEL_CODE_BASE)
    craftsmen, _ = compute.craftsman_window(
        lambda start: _rows_between(frame, start, day), ai_start, day, earliest, rule
    )
    comparison = compute.compare(ai_rows, craftsmen, rule)
    out: dict[str, Any] = {
        "day": day.isoformat(),
        "verdict": comparison.verdict,
        "judged_version": comparison.judged_version,
        "ai_quality": comparison.ai_quality,
        "best_craftsman": (comparison.best or {}).get("set_by"),
        "best_craftsman_estimate": (comparison.best or {}).get("comparable_quality"),
    }
    judged = ai_rows.filter(
        (pl.col("set_by") == comparison.judged_version) & pl.col("qa_quality").is_not_null()
    )
    ids = [i for i in judged["production_id"].to_list() if all(i in q for q in replayed.values())]
    if not ids or not replayed:
        out.update(truth=None, agrees=None)
        return out
    realized = judged.filter(pl.col("production_id").is_in(ids))["qa_quality"].to_numpy()
    by_craftsman = {name: float(np.mean([q[i] for i in ids])) for name, q in replayed.items()}
    best = max(by_craftsman, key=by_craftsman.__getitem__)
    truth = bool(realized.mean() >= by_craftsman[best])
    out.update(
        truth_ai_quality=float(realized.mean()),
        truth_best_craftsman=best,
        truth_best_craftsman_quality=by_craftsman[best],
        truth="pass" if truth else "fail",
        agrees=None if comparison.verdict == "not_judged" else (comparison.verdict == "pass") == truth,
    )
    return out


def quarter_verdict(
    frame: pl.DataFrame, first: dt.date, end: dt.date, earliest: dt.date,
    replayed: Mapping[str, Mapping[int, float]], line_beats_best: bool,
    rule: compute.WindowRule | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The check over one model-run quarter: each judged day, the quarter's verdict and its agreement."""
    rule = rule or compute.WindowRule()
    days = [judge_day(frame, d, earliest, replayed, rule) for d in check_days(first, end)]
    verdicts = [d["verdict"] for d in days]
    verdict = "fail" if "fail" in verdicts else "pass" if "pass" in verdicts else "not_judged"
    return {
        "verdict": verdict,
        "truth": "pass" if line_beats_best else "fail",
        "agrees": None if verdict == "not_judged" else (verdict == "pass") == line_beats_best,
        "days_judged": sum(v != "not_judged" for v in verdicts),
        "days_failed": verdicts.count("fail"),
        "days_disagreeing_with_truth": [d["day"] for d in days if d["agrees"] is False],
        "days": days,
    }
