"""The per-production table: one Parquet file per (line, day) under processed/line=/date=/productions.parquet.

Why Parquet via polars into the object store (no IO manager): the file is the product other systems
read (model training, analysts), its key is fixed by the data layout, and the bytes must be reproducible
(re-materializing a partition rewrites it byte-identically: rows ordered by production id, no timestamps).
"""

import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    DimensionPartitionMapping,
    FreshnessPolicy,
    IdentityPartitionMapping,
    MaterializeResult,
    MetadataValue,
    MultiPartitionMapping,
    Output,
    TableColumn,
    TableSchema,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from factory_assets.markdown import md_table
from factory_assets.partition_checks import Verdict, partition_check_spec, report
from factory_assets.production.automation import PRODUCTIONS_CONDITION
from factory_assets.production.checks import RULES, check_metadata
from factory_assets.production.columns import describe
from factory_assets.production.completeness import PRODUCTIONS_KEY
from factory_assets.production.compute import (
    DEFAULT_LOOKAHEAD_S,
    DEFAULT_LOOKBACK_S,
    DayResult,
    build_day,
    parquet_bytes,
)
from factory_assets.production.plots import png_markdown, quality_plot_png
from factory_assets.raw.assets import GAPS_ASSET_KEY, RAW_ASSET_KEY
from factory_assets.raw.partitions import LINE_DAY_PARTITIONS, split_key
from factory_assets.resources.object_store import ObjectStoreResource
from factory_core.layout import processed_key

PREVIEW_COLUMNS = (
    "production_id",
    "start",
    "end",
    "set_by",
    "qa_quality",
    "cycle_time_s",
    "energy_kwh",
    "fault",
)
MAX_PARTITIONS_PER_RUN = 31
# Refreshed within minutes of a raw object landing (target 15 min): warn after 30 min, fail after 2 h.
PRODUCTIONS_FRESHNESS = FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=2), warn_window=dt.timedelta(minutes=30)
)

# A day's table reads the previous day's last hour and the next day's first hour (see compute.py), so
# raw objects of day D re-materialize the tables of D-1, D and D+1: exactly the partitions they touch.
# Gap objects use the same mapping (a gap keyed on D-1 may extend into D).
RAW_TO_PRODUCTIONS = MultiPartitionMapping(
    {
        "date": DimensionPartitionMapping(
            "date",
            TimeWindowPartitionMapping(
                start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True
            ),
        ),
        "line": DimensionPartitionMapping("line", IdentityPartitionMapping()),
    }
)


class ProductionsConfig(Config):
    lookback_s: int = Field(default=DEFAULT_LOOKBACK_S, description="Seconds read before midnight")
    lookahead_s: int = Field(default=DEFAULT_LOOKAHEAD_S, description="Seconds read after the next midnight")


def table_schema(frame: pl.DataFrame) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(name, str(dtype), description=describe(name)) for name, dtype in frame.schema.items()
        ]
    )


def _preview(frame: pl.DataFrame, rows: int = 10) -> str:
    head = frame.select([c for c in PREVIEW_COLUMNS if c in frame.columns]).head(rows)
    return md_table(head) if head.height else "_no productions_"


def _partition_metadata(day: DayResult, key: str, data: bytes) -> dict[str, Any]:
    frame = day.frame
    md: dict[str, Any] = {
        "dagster/row_count": frame.height,
        "dagster/column_schema": table_schema(frame),
        "path": MetadataValue.path(key),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "raw_objects": day.objects,
        "gap_objects": day.gap_objects,
        "day_complete": day.complete,
        "missing_seconds": MetadataValue.json({k: v for k, v in day.missing_s.items() if v > 0}),
        "running_at_midnight": day.running_at_midnight,
        "qa_pending": day.qa_pending,
        "quarantined": MetadataValue.json([{"key": k, "reason": r} for k, r in day.quarantined]),
        "preview": MetadataValue.md(_preview(frame)),
    }
    if frame.height:
        md["first_start"] = MetadataValue.timestamp(frame["start"].min())  # type: ignore[arg-type]
        md["last_end"] = MetadataValue.timestamp(frame["end"].max())  # type: ignore[arg-type]
        qa = frame["qa_quality"].drop_nulls()
        if qa.len():
            md["quality_mean"] = float(qa.mean())  # type: ignore[arg-type]
        md["quality_plot"] = MetadataValue.md(
            png_markdown(quality_plot_png(frame, f"{day.line} {day.date} QA quality"), "quality over the day")
        )
    return md


@asset(
    key=PRODUCTIONS_KEY,
    description=(
        "One row per production: line, id, start/end (machine_state grid), lot quality figures, setpoints "
        "in effect, set_by (craftsman code or model version), QA quality, cycle time, energy (integral of "
        "power_kw), faults and per-channel features (mean/min/max/std/slope, seconds above limit) of every "
        "fast channel. A production belongs to the day it starts; runs straddling midnight or an object "
        "boundary are completed from the next day's first hour. Parquet under "
        "processed/line={line}/date={date}/productions.parquet."
    ),
    partitions_def=LINE_DAY_PARTITIONS,
    deps=[
        AssetDep(RAW_ASSET_KEY, partition_mapping=RAW_TO_PRODUCTIONS),
        AssetDep(GAPS_ASSET_KEY, partition_mapping=RAW_TO_PRODUCTIONS),
    ],
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
    automation_condition=PRODUCTIONS_CONDITION,
    freshness_policy=PRODUCTIONS_FRESHNESS,
    check_specs=[
        partition_check_spec(name, PRODUCTIONS_KEY, rule.description) for name, rule in RULES.items()
    ],
    group_name="production",
    kinds={"polars", "parquet"},
    owners=["team:data-platform"],
    code_version="1",
)
def productions(
    context: AssetExecutionContext, config: ProductionsConfig, object_store: ObjectStoreResource
) -> Iterator[MaterializeResult | Output[None]]:
    store = object_store.get_store()
    keys = list(context.partition_keys)
    verdicts: list[Verdict] = []
    for pk in keys:
        line, date = split_key(pk)
        day = build_day(store, line, date, config.lookback_s, config.lookahead_s)
        for key, reason in day.quarantined:
            context.log.error(f"corrupt object {key!r} quarantined under quarantine/{key}: {reason}")
        data = parquet_bytes(day.frame)
        out_key = processed_key(line, date)
        store.put(out_key, data)
        checks: dict[str, bool] = {}
        for name, rule in RULES.items():
            passed, md = rule.fn(day)
            verdicts.append(Verdict(name, str(pk), passed, rule.severity, md))
            checks[name] = passed
        # Each partition's own materialization event carries its own figures (ranged runs and
        # backfills included): Dagster merges partition-scoped metadata into that partition's event.
        context.add_asset_metadata(
            {**_partition_metadata(day, out_key, data), **check_metadata(checks)}, partition_key=pk
        )
        context.log.info(
            f"{pk}: {day.frame.height} productions, complete={day.complete}, {day.objects} objects"
        )
    # Run-scoped metadata (copied onto every partition's event): only what is true for each of them.
    yield MaterializeResult(metadata={"run_partitions": len(keys)})
    # Then every rule's verdict on each partition, recorded on that partition (see partition_checks.py).
    yield from report(context, PRODUCTIONS_KEY, verdicts)
