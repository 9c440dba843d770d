"""Dagster metadata of a quality_model materialization: tables, metrics JSON and the plot.

Why one module: the asset stays a readable sequence of steps (read, train, evaluate, publish, register)
and everything shown in the UI is shaped here, from plain dicts the evaluation already produced.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from dagster import MetadataValue

from factory_assets.markdown import md_table
from factory_assets.model.data import TrainingSet
from factory_assets.model.versions_table import json_safe
from factory_assets.production.plots import png_markdown
from quality_model.registry import PublishResult

ERROR_KEYS = ("quality_rmse", "quality_mae", "n")


def days_table(training: TrainingSet) -> str:
    rows = [{**d, "date": d["date"].isoformat()} for d in training.days]
    return (
        md_table(pl.DataFrame(rows, schema_overrides={"productions": pl.Int64})) if rows else "_no line-days_"
    )


def decision_table(result: PublishResult, serving_before: str | None, serving_after: str | None) -> str:
    cand = result.metrics.get("candidate", {})
    serv = result.metrics.get("serving", {})
    rows = [
        {"": "version", "candidate": result.version, "serving": serv.get("version", serving_before or "-")},
        *[{"": k, "candidate": cand.get(k), "serving": serv.get(k)} for k in ERROR_KEYS],
    ]
    frame = pl.DataFrame([{k: None if v is None else str(v) if not isinstance(v, float) else f"{v:.4g}" for k, v in r.items()} for r in rows])  # fmt: skip
    verdict = "PROMOTED" if result.promoted else "NOT PROMOTED"
    return f"**{verdict}**: {result.reason}\n\nserving now: `{serving_after}`\n\n{md_table(frame)}"


def replay_table(report: dict[str, Any]) -> str:
    r = report["replay"]
    rows = [
        {"quantity": "held-out productions replayed", "value": float(r["rows"])},
        {"quantity": "no feasible setting (operator decides)", "value": float(r["infeasible"])},
        {"quantity": "actual mean QA quality", "value": r["mean_actual_quality"]},
        {"quantity": "predicted under the operator's setting", "value": r["mean_predicted_operator"]},
        {"quantity": "predicted under the recommendation", "value": r["mean_predicted_recommended"]},
        {"quantity": "predicted uplift", "value": r["predicted_uplift"]},
    ]
    return md_table(pl.DataFrame(rows))


def errors_table(report: dict[str, Any]) -> str:
    keys = ("holdout_rows", "quality_rmse", "quality_mae", "quality_r2", "fault_rate", "fault_logloss",
            "fault_brier", "fault_auc")  # fmt: skip
    return md_table(pl.DataFrame([{"metric": k, "value": float(report[k])} for k in keys]))


def calibration_table(report: dict[str, Any]) -> str:
    bins = report.get("fault_calibration") or []
    return md_table(pl.DataFrame(bins)) if bins else "_no held-out rows_"


def importance_table(report: dict[str, Any]) -> str:
    gain = report["feature_importance_gain"]
    total = sum(gain.values()) or 1.0
    rows = sorted(
        ({"feature": k, "gain": v, "share": v / total} for k, v in gain.items()), key=lambda r: -r["gain"]
    )
    return md_table(pl.DataFrame(rows)) if rows else "_none_"


def baseline_table(holdout: list[dict[str, Any]], window: dict[str, dict[str, Any]]) -> str:
    names = sorted({b["set_by"] for b in holdout} | set(window))
    by_name = {b["set_by"]: b for b in holdout}
    rows = [
        {
            "set_by": n,
            "holdout_productions": by_name.get(n, {}).get("holdout_productions"),
            "holdout_quality_mean": by_name.get(n, {}).get("holdout_quality_mean"),
            "window_productions": window.get(n, {}).get("window_productions"),
            "window_quality_mean": window.get(n, {}).get("window_quality_mean"),
        }
        for n in names
    ]
    schema = {"set_by": pl.String, "holdout_productions": pl.Int64, "holdout_quality_mean": pl.Float64,
              "window_productions": pl.Int64, "window_quality_mean": pl.Float64}  # fmt: skip
    return md_table(pl.DataFrame(rows, schema=schema)) if rows else "_no craftsman in the data_"


def metrics_json(report: dict[str, Any]) -> MetadataValue:
    """Every scalar of the evaluation (no plot bytes), NaN as null."""
    return MetadataValue.json(json_safe({k: v for k, v in report.items() if k != "plot_png"}))


def plot_markdown(report: dict[str, Any]) -> MetadataValue:
    return MetadataValue.md(png_markdown(report["plot_png"], "held-out predicted vs actual QA quality"))
