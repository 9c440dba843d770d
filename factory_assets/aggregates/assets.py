"""Daily aggregates per line and day in the warehouse (delete + insert of the day in one transaction).

Why the warehouse: dashboards and the model team query days across lines with SQL; Parquet stays the
per-production source of truth. Materialized automatically only for complete days (see automation.py).
"""

import io
from collections.abc import Iterator
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from factory_assets.aggregates.automation import aggregates_condition
from factory_assets.aggregates.compute import breakdown_rows, daily_row
from factory_assets.aggregates.tables import DAILY_LINE_AGGREGATES, DAILY_SET_BY_BREAKDOWN
from factory_assets.markdown import md_table
from factory_assets.production.assets import MAX_PARTITIONS_PER_RUN, PRODUCTIONS_KEY
from factory_assets.raw.partitions import LINE_DAY_PARTITIONS, split_key
from factory_assets.resources.object_store import ObjectStoreResource
from factory_assets.resources.warehouse import WarehouseResource
from factory_core.layout import processed_key
from factory_core.store import ObjectNotFoundError

AGGREGATES_KEY = AssetKey(["aggregates", "daily_line_aggregates"])

CHECKS = {
    "aggregates_match_productions": "Warehouse production count and breakdown totals equal the Parquet rows.",
    "aggregates_quality_range": "Quality mean and quantiles lie in [0, 100] and p10 <= p50 <= p90.",
}


def _schema(table: Any) -> TableSchema:
    return TableSchema(columns=[TableColumn(c.name, str(c.type)) for c in table.columns])


@asset(
    key=AGGREGATES_KEY,
    description=(
        "Daily aggregates per line and day in the warehouse: production count, QA quality mean and "
        "p10/p50/p90, fault counts by kind, run hours, throughput, cycle time, energy; plus a per-craftsman / "
        "per-model-version breakdown (table daily_set_by_breakdown). Written only for complete days."
    ),
    partitions_def=LINE_DAY_PARTITIONS,
    deps=[PRODUCTIONS_KEY],
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
    automation_condition=aggregates_condition(PRODUCTIONS_KEY),
    check_specs=[AssetCheckSpec(name, asset=AGGREGATES_KEY, description=d) for name, d in CHECKS.items()],
    group_name="aggregates",
    kinds={"sql", "polars"},
    owners=["team:data-platform"],
    code_version="1",
)
def daily_line_aggregates(
    context: AssetExecutionContext, object_store: ObjectStoreResource, warehouse: WarehouseResource
) -> Iterator[MaterializeResult | AssetCheckResult]:
    store = object_store.get_store()
    daily: list[dict[str, Any]] = []
    breakdown: list[dict[str, Any]] = []
    mismatched: list[str] = []
    bad_quality: list[str] = []
    for pk in context.partition_keys:
        line, date = split_key(pk)
        key = processed_key(line, date)
        try:
            frame = pl.read_parquet(io.BytesIO(store.get(key)))
        except ObjectNotFoundError as exc:
            raise RuntimeError(
                f"{pk}: production table {key!r} is missing; materialize productions first"
            ) from exc
        row = daily_row(line, date, frame)
        parts = breakdown_rows(line, date, frame)
        warehouse.replace_partition(
            [
                (DAILY_LINE_AGGREGATES, {"line": line, "date": row["date"]}, [row]),
                (DAILY_SET_BY_BREAKDOWN, {"line": line, "date": row["date"]}, parts),
            ]
        )
        stored = warehouse.fetch(DAILY_LINE_AGGREGATES, {"line": line, "date": row["date"]})
        stored_parts = warehouse.fetch(DAILY_SET_BY_BREAKDOWN, {"line": line, "date": row["date"]})
        if (
            not stored
            or stored[0]["productions"] != frame.height
            or sum(p["productions"] for p in stored_parts) != frame.height
        ):
            mismatched.append(str(pk))
        qs = [row["quality_p10"], row["quality_p50"], row["quality_p90"], row["quality_mean"]]
        if any(q is not None and not 0.0 <= q <= 100.0 for q in qs) or (
            None not in qs[:3] and not qs[0] <= qs[1] <= qs[2]
        ):
            bad_quality.append(str(pk))
        daily.append(row)
        breakdown.extend(parts)
    preview = pl.DataFrame(daily).select(
        "line", "date", "productions", "quality_mean", "quality_p10", "quality_p50", "quality_p90", "faults",
        "energy_kwh",
    )  # fmt: skip
    yield MaterializeResult(
        metadata={
            "dagster/row_count": len(daily),
            "dagster/column_schema": _schema(DAILY_LINE_AGGREGATES),
            "breakdown_rows": len(breakdown),
            "breakdown_schema": _schema(DAILY_SET_BY_BREAKDOWN),
            "warehouse": warehouse.describe(),
            "preview": MetadataValue.md(md_table(preview)),
            "breakdown_preview": MetadataValue.md(
                md_table(pl.DataFrame(breakdown)) if breakdown else "_none_"
            ),
        }
    )
    yield AssetCheckResult(
        check_name="aggregates_match_productions",
        passed=not mismatched,
        severity=AssetCheckSeverity.ERROR,
        metadata={"failed_partitions": MetadataValue.json(mismatched)},
    )
    yield AssetCheckResult(
        check_name="aggregates_quality_range",
        passed=not bad_quality,
        severity=AssetCheckSeverity.ERROR,
        metadata={"failed_partitions": MetadataValue.json(bad_quality)},
    )
