"""The quarter's training set: complete line-days of the production table, chosen via the daily aggregates.

Why the aggregates decide: the aggregates automation writes a line-day only once the day is complete, so a
`daily_line_aggregates` row is the completeness marker; a day whose Parquet row count differs from its
aggregates (stale) or whose QA is still pending is left out and named, never silently trained on. A row
is not proof enough on its own (aggregates written for a half day before the asset refused them, or a day
whose table was re-materialized incomplete): `incomplete` names the line-days whose production table
reports them incomplete, and those never count either.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from factory_core.layout import PROCESSED_PREFIX, parse_key, processed_key
from factory_core.rawformat import RawFormatError
from factory_core.store import ObjectStore
from quality_model.training import REQUIRED_COLUMNS

TRAINING_COLUMNS = (*REQUIRED_COLUMNS, "set_by", "set_by_code", "fault_code")
CRAFTSMAN_PREFIX = "craftsman:"
MIN_BASELINE_ROWS = 50  # a craftsman needs this many productions in the window to count as a baseline


@dataclass
class TrainingSet:
    """Rows to train on plus an account of every line-day of the window (used or why not)."""

    start: dt.date  # window [start, end)
    end: dt.date
    frame: pl.DataFrame
    days: list[dict[str, Any]] = field(default_factory=list)  # line, date, productions, used, reason

    @property
    def used_days(self) -> list[tuple[str, dt.date]]:
        return [(d["line"], d["date"]) for d in self.days if d["used"]]


def window_bounds(start: dt.date, end: dt.date, window_days: int | None) -> tuple[dt.date, dt.date]:
    """The trailing `window_days` of the partition's [start, end) (the whole quarter when None)."""
    if window_days is None:
        return start, end
    if window_days < 1:
        raise ValueError(f"window_days: must be >= 1, got {window_days}")
    return max(start, end - dt.timedelta(days=window_days)), end


def parquet_days(keys: Iterable[str]) -> set[tuple[str, dt.date]]:
    """(line, date) of every production table among object keys (exact key layout only)."""
    out: set[tuple[str, dt.date]] = set()
    for key in keys:
        try:
            info = parse_key(key)
        except RawFormatError:
            continue
        if info.kind == "processed" and processed_key(info.line, info.date) == key:
            out.add((info.line, info.date))
    return out


def select_days(
    aggregates: Iterable[Mapping[str, Any]],
    tables: set[tuple[str, dt.date]],
    start: dt.date,
    end: dt.date,
    incomplete: Mapping[tuple[str, dt.date], str] | None = None,
) -> list[dict[str, Any]]:
    """One entry per line-day of [start, end) that has a table or an aggregates row; `used` if trainable.

    The Parquet row-count comparison happens later (when the table is read); here: presence and QA.
    """
    by_day = {(r["line"], _date(r["date"])): r for r in aggregates if start <= _date(r["date"]) < end}
    days = []
    for line, day in sorted(set(by_day) | {t for t in tables if start <= t[1] < end}):
        row = by_day.get((line, day))
        entry: dict[str, Any] = {"line": line, "date": day, "productions": None, "used": False, "reason": ""}
        if row is None:
            entry["reason"] = "no daily aggregates (day not complete yet)"
        elif incomplete and (line, day) in incomplete:
            entry["reason"] = f"day incomplete: {incomplete[(line, day)]}"
        elif (line, day) not in tables:
            entry["reason"] = "aggregates without a production table"
        elif row["qa_count"] != row["productions"]:
            entry["reason"] = f"QA pending for {row['productions'] - row['qa_count']} productions"
        elif row["productions"] == 0:
            entry["reason"] = "no productions"
        else:
            entry.update(productions=int(row["productions"]), used=True, reason="complete")
        days.append(entry)
    return days


def load_training_set(
    store: ObjectStore,
    aggregates: Iterable[Mapping[str, Any]],
    start: dt.date,
    end: dt.date,
    incomplete: Callable[[list[tuple[str, dt.date]]], Mapping[tuple[str, dt.date], str]] | None = None,
) -> TrainingSet:
    """Read the Parquet of every selected line-day (polars) into one frame of the training columns.

    `incomplete(candidates)` returns the candidate line-days to leave out as incomplete, with why."""
    aggregates = list(aggregates)
    tables = parquet_days(store.list(PROCESSED_PREFIX))
    flagged: Mapping[tuple[str, dt.date], str] = {}
    if incomplete is not None:
        candidates = [(r["line"], _date(r["date"])) for r in aggregates if start <= _date(r["date"]) < end]
        flagged = incomplete(sorted(set(candidates)))
    days = select_days(aggregates, tables, start, end, flagged)
    frames = []
    for entry in days:
        if not entry["used"]:
            continue
        frame = pl.read_parquet(
            io.BytesIO(store.get(processed_key(entry["line"], entry["date"].isoformat())))
        )
        if frame.height != entry["productions"]:
            entry.update(
                used=False,
                reason=f"aggregates stale: table has {frame.height}, aggregates {entry['productions']}",
            )
            continue
        missing = [c for c in TRAINING_COLUMNS if c not in frame.columns]
        if missing:
            entry.update(used=False, reason=f"production table lacks columns {missing}")
            continue
        frames.append(frame.select(TRAINING_COLUMNS))
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    return TrainingSet(start, end, to_trainer_encoding(frame) if frames else frame, days)


def to_trainer_encoding(frame: pl.DataFrame) -> pl.DataFrame:
    """The table writes fault "none" for a clean run; the trainer reads any non-empty `fault` as a fault.

    fault_code (0 = none) is authoritative, so `fault` becomes null where fault_code is 0.
    """
    return frame.with_columns(
        pl.when(pl.col("fault_code") == 0).then(None).otherwise(pl.col("fault")).alias("fault")
    )


def shuffle_quality(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Drill: QA scores permuted across rows (a model trained on this must lose to a sound one)."""
    perm = np.random.default_rng(seed).permutation(frame.height)
    return frame.with_columns(pl.Series("qa_quality", frame["qa_quality"].to_numpy()[perm]))


def restore_quality(holdout: pd.DataFrame, truth: pl.DataFrame) -> pd.DataFrame:
    """The held-out rows with their recorded QA scores (the drill corrupts training, not the yardstick)."""
    lookup = {(ln, pid): q for ln, pid, q in truth.select("line", "production_id", "qa_quality").iter_rows()}
    out = holdout.copy()
    out["qa_quality"] = [
        lookup[(ln, int(pid))] for ln, pid in zip(out["line"], out["production_id"], strict=True)
    ]
    return out


def holdout_baselines(holdout: pd.DataFrame) -> list[dict[str, Any]]:
    """Actual mean QA per craftsman on the held-out rows (faulted runs count with their recorded score)."""
    rows = holdout.loc[holdout["set_by"].astype(str).str.startswith(CRAFTSMAN_PREFIX)]
    grouped = rows.groupby("set_by")["qa_quality"].agg(n="count", quality="mean").reset_index()
    return sorted(
        (
            {"set_by": str(s), "holdout_productions": int(n), "holdout_quality_mean": float(q)}
            for s, n, q in grouped[["set_by", "n", "quality"]].itertuples(index=False)
        ),
        key=lambda r: -r["holdout_quality_mean"],
    )


def window_baselines(
    breakdown: Iterable[Mapping[str, Any]], used: set[tuple[str, dt.date]]
) -> dict[str, dict[str, Any]]:
    """Production-weighted mean QA per craftsman over the used line-days (daily_set_by_breakdown)."""
    acc: dict[str, list[float]] = {}
    for r in breakdown:
        if (
            (r["line"], _date(r["date"])) not in used
            or r["set_by_kind"] != "craftsman"
            or r["quality_mean"] is None
        ):
            continue
        n, total = acc.setdefault(r["set_by"], [0.0, 0.0])
        acc[r["set_by"]] = [n + r["productions"], total + r["productions"] * r["quality_mean"]]
    return {k: {"window_productions": int(n), "window_quality_mean": t / n} for k, (n, t) in acc.items() if n}


def best_baseline(window: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The craftsman with the best mean QA over the training line-days, among those with enough productions
    to be a fair yardstick (the window, not the short held-out tail: a few lucky runs must not decide)."""
    eligible = [{"set_by": k, **v} for k, v in window.items() if v["window_productions"] >= MIN_BASELINE_ROWS]
    return max(eligible, key=lambda b: b["window_quality_mean"]) if eligible else None


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
