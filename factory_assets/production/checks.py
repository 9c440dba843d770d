"""Data-quality rules of the production table, evaluated inside the asset for each partition it writes.

Why in-asset (check_specs): the table is partitioned; the asset holds the partition's frame and inputs
(completeness, quarantined objects), so checking there costs no re-read and cannot drift from the file.
Each rule returns (passed, metadata) per partition. The asset records every rule's verdict as a
partitioned asset check evaluation of that partition (factory_assets/partition_checks.py: the check's
Partitions tab shows which day failed, also for the days of a ranged run or backfill) and on that
partition's own materialization (`check/<rule>` metadata, next to the figures it judged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
from dagster import AssetCheckSeverity

from factory_assets.production.cadence import TOLERANCE, cadence_ok
from factory_assets.production.compute import DayResult

BASE_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.String(),
    "production_id": pl.Int64(),
    "start": pl.Datetime("ns", "UTC"),
    "end": pl.Datetime("ns", "UTC"),
    "lot_moisture": pl.Float64(),
    "lot_hardness": pl.Float64(),
    "lot_density": pl.Float64(),
    "lot_impurity": pl.Float64(),
    "sp_temperature": pl.Float64(),
    "sp_feed_rate": pl.Float64(),
    "sp_pressure": pl.Float64(),
    "set_by_code": pl.Int32(),
    "set_by": pl.String(),
    "qa_quality": pl.Float64(),
    "qa_at": pl.Datetime("ns", "UTC"),
    "cycle_time_s": pl.Float64(),
    "energy_kwh": pl.Float64(),
    "fault_code": pl.Int32(),
    "fault": pl.String(),
}
FEATURE_STATS = ("mean", "min", "max", "std", "slope")

# Physical ranges (lot figures as delivered, setpoints within the machine's safety ranges).
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "qa_quality": (0.0, 100.0),
    "cycle_time_s": (0.0, 1200.0 + 1.0),
    "energy_kwh": (0.0, 1000.0),
    "lot_moisture": (1.0, 14.0),
    "lot_hardness": (35.0, 95.0),
    "lot_density": (1.05, 1.60),
    "lot_impurity": (0.0, 4.0),
    "sp_temperature": (140.0, 260.0),
    "sp_feed_rate": (10.0, 60.0),
    "sp_pressure": (40.0, 160.0),
}

Rule = tuple[bool, dict[str, Any]]


def check_schema(frame: pl.DataFrame) -> Rule:
    """Base columns present with their dtypes; every fast channel has the full set of statistics."""
    problems = [
        f"{name}: expected {dtype}, got {frame.schema.get(name)}"
        for name, dtype in BASE_SCHEMA.items()
        if frame.schema.get(name) != dtype
    ]
    channels = {c.rsplit("_", 1)[0] for c in frame.columns if c.endswith("_mean")}
    for ch in sorted(channels):
        problems += [f"{ch}_{s}: missing" for s in FEATURE_STATS if f"{ch}_{s}" not in frame.columns]
    return not problems, {"problems": problems, "columns": frame.width, "feature_channels": len(channels)}


def check_unique_ids(frame: pl.DataFrame) -> Rule:
    dupes = frame.group_by("production_id").len().filter(pl.col("len") > 1)["production_id"].to_list()
    return not dupes, {"duplicate_ids": sorted(dupes)}


def check_value_ranges(frame: pl.DataFrame) -> Rule:
    bad: dict[str, int] = {}
    for col, (lo, hi) in VALUE_RANGES.items():
        if col in frame.columns:
            n = frame.filter(pl.col(col).is_not_null() & ((pl.col(col) < lo) | (pl.col(col) > hi))).height
            if n:
                bad[col] = n
    ends_after = frame.filter(pl.col("end") <= pl.col("start")).height
    if ends_after:
        bad["end<=start"] = ends_after
    return not bad, {"out_of_range_rows": bad}


def check_cadence(day: DayResult) -> Rule:
    """Complete days must hold the expected number of productions (+-15 %); incomplete days pass."""
    if not day.complete:
        return True, {"skipped": "day not complete yet", "productions": day.frame.height}
    ok, expected = cadence_ok(day.frame)
    return ok, {"productions": day.frame.height, "expected": expected, "tolerance": TOLERANCE}


def check_completeness(day: DayResult) -> Rule:
    """Every channel covered to the end of the day (or gap-recorded), every run ended and QA'd."""
    missing = {k: v for k, v in day.missing_s.items() if v > 0}
    return day.complete, {
        "channels": day.channels,
        "missing_seconds": missing,
        "running_at_midnight": day.running_at_midnight,
        "qa_pending": day.qa_pending,
    }


def check_raw_objects_valid(day: DayResult) -> Rule:
    """No raw/gap object of the window failed validation (failures were quarantined)."""
    return not day.quarantined, {"quarantined": [f"{k}: {reason}" for k, reason in day.quarantined]}


CHECK_PREFIX = "check/"


def check_metadata(verdicts: dict[str, bool]) -> dict[str, Any]:
    """Per-partition metadata entries of the rules' verdicts (`check/<rule>`: True when passed)."""
    return {f"{CHECK_PREFIX}{name}": bool(passed) for name, passed in verdicts.items()}


@dataclass(frozen=True)
class RuleSpec:
    fn: Callable[[DayResult], Rule]
    severity: AssetCheckSeverity
    description: str


RULES: dict[str, RuleSpec] = {
    "productions_schema": RuleSpec(
        lambda d: check_schema(d.frame),
        AssetCheckSeverity.ERROR,
        "Columns and dtypes of the production table.",
    ),
    "productions_unique_ids": RuleSpec(
        lambda d: check_unique_ids(d.frame), AssetCheckSeverity.ERROR, "No production id appears twice."
    ),
    "productions_value_ranges": RuleSpec(
        lambda d: check_value_ranges(d.frame),
        AssetCheckSeverity.ERROR,
        "QA, cycle time, energy, lot figures and setpoints within physical ranges; end after start.",
    ),
    "productions_cadence": RuleSpec(
        check_cadence,
        AssetCheckSeverity.WARN,
        "A complete day holds the expected number of productions for its cycle times (+-15 %).",
    ),
    "productions_completeness": RuleSpec(
        check_completeness,
        AssetCheckSeverity.WARN,
        "Every channel covered to the end of the day (or the missing span recorded as a gap), every "
        "production of the day ended and its QA published.",
    ),
    "raw_objects_valid": RuleSpec(
        check_raw_objects_valid,
        AssetCheckSeverity.ERROR,
        "No corrupt raw/gap object in the partition's window (corrupt ones are quarantined, named here).",
    ),
}
