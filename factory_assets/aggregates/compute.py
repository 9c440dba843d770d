"""Daily aggregates of one line-day from its production table (pure polars: testable on its own).

Quantiles use linear interpolation (deterministic); throughput is productions per hour of the day.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def daily_row(line: str, date: str, frame: pl.DataFrame) -> dict[str, Any]:
    """One row of daily_line_aggregates."""
    qa = frame["qa_quality"].drop_nulls() if frame.height else pl.Series("qa_quality", [], pl.Float64)
    n = frame.height
    energy = float(frame["energy_kwh"].fill_null(0.0).sum()) if n else 0.0
    run_s = float(frame["cycle_time_s"].sum()) if n else 0.0
    return {
        "line": line,
        "date": dt.date.fromisoformat(date),
        "productions": n,
        "qa_count": qa.len(),
        "quality_mean": _f(qa.mean()) if qa.len() else None,
        "quality_p10": _f(qa.quantile(0.1, "linear")) if qa.len() else None,
        "quality_p50": _f(qa.quantile(0.5, "linear")) if qa.len() else None,
        "quality_p90": _f(qa.quantile(0.9, "linear")) if qa.len() else None,
        "faults": int((frame["fault_code"] > 0).sum()) if n else 0,
        "faults_over_current": int((frame["fault_code"] == 1).sum()) if n else 0,
        "faults_over_temperature": int((frame["fault_code"] == 2).sum()) if n else 0,
        "run_hours": run_s / 3600.0,
        "throughput_per_hour": n / 24.0,
        "cycle_time_mean_s": _f(frame["cycle_time_s"].mean()) if n else None,
        "energy_kwh": energy,
        "energy_per_production_kwh": energy / n if n else None,
    }


def _kind(set_by: str) -> str:
    return set_by.split(":", 1)[0] if ":" in set_by else "unknown"


def breakdown_rows(line: str, date: str, frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows of daily_set_by_breakdown: one per craftsman / model version active that day."""
    if frame.height == 0:
        return []
    grouped = (
        frame.group_by("set_by")
        .agg(
            pl.len().alias("productions"),
            pl.col("qa_quality").mean().alias("quality_mean"),
            pl.col("qa_quality").quantile(0.5, "linear").alias("quality_p50"),
            (pl.col("fault_code") > 0).sum().alias("faults"),
            pl.col("cycle_time_s").mean().alias("cycle_time_mean_s"),
            pl.col("energy_kwh").fill_null(0.0).sum().alias("energy_kwh"),
        )
        .sort("set_by")
    )
    day = dt.date.fromisoformat(date)
    return [
        {
            "line": line,
            "date": day,
            "set_by": r["set_by"],
            "set_by_kind": _kind(r["set_by"]),
            "productions": int(r["productions"]),
            "quality_mean": _f(r["quality_mean"]),
            "quality_p50": _f(r["quality_p50"]),
            "faults": int(r["faults"]),
            "cycle_time_mean_s": _f(r["cycle_time_mean_s"]),
            "energy_kwh": float(r["energy_kwh"]),
        }
        for r in grouped.iter_rows(named=True)
    ]
