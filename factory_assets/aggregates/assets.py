"""Daily aggregates per line and day in the warehouse (delete + insert of the day in one transaction).

Why the warehouse: dashboards and the model team query days across lines with SQL; Parquet stays the
per-production source of truth. Materialized automatically only for complete days (see automation.py),
and the asset itself refuses an incomplete day whoever launches it (UI, backfill, CLI): a day is complete
when its production table's latest materialization says so (production/completeness.py); otherwise the
run fails naming the day and what is missing, before anything is written. Every partition's own
materialization carries its own row, checks and preview, also in ranged runs and backfills.
"""

import io
from collections.abc import Iterator
from typing import Any

import polars as pl
from dagster import (
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from factory_assets.aggregates.automation import aggregates_condition
from factory_assets.aggregates.compute import breakdown_rows, daily_row
from factory_assets.aggregates.tables import DAILY_LINE_AGGREGATES, DAILY_SET_BY_BREAKDOWN
from factory_assets.dimensions.compute import lot_rows
from factory_assets.dimensions.tables import LOTS
from factory_assets.markdown import md_table
from factory_assets.partition_checks import Verdict, partition_check_spec, report
from factory_assets.production.assets import MAX_PARTITIONS_PER_RUN
from factory_assets.production.checks import check_metadata
from factory_assets.production.completeness import PRODUCTIONS_KEY, reported_days
from factory_assets.raw.partitions import LINE_DAY_PARTITIONS, split_key
from factory_assets.resources.object_store import ObjectStoreResource
from factory_assets.resources.warehouse import WarehouseResource
from factory_assets.schema import table_schema
from factory_core.layout import processed_key
from factory_core.store import ObjectNotFoundError

AGGREGATES_KEY = AssetKey(["aggregates", "daily_line_aggregates"])

CHECKS = {
    "aggregates_match_productions": (
        "Warehouse production count, breakdown totals and the day's lots equal the Parquet rows."
    ),
    "aggregates_quality_range": "Quality mean and quantiles lie in [0, 100] and p10 <= p50 <= p90.",
}


@asset(
    key=AGGREGATES_KEY,
    description=(
        "Daily aggregates per line and day in the warehouse: production count, QA quality mean and "
        "p10/p50/p90, fault counts by kind, run hours, throughput, cycle time, energy; plus a per-craftsman / "
        "per-model-version breakdown (table daily_set_by_breakdown) and the day's lots (dimension table "
        "lots: lot id and figures per production). Written only for complete days."
    ),
    partitions_def=LINE_DAY_PARTITIONS,
    deps=[PRODUCTIONS_KEY],
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
    automation_condition=aggregates_condition(PRODUCTIONS_KEY),
    check_specs=[partition_check_spec(name, AGGREGATES_KEY, d) for name, d in CHECKS.items()],
    group_name="aggregates",
    kinds={"sql", "polars"},
    owners=["team:data-platform"],
    code_version="2",
)
def daily_line_aggregates(
    context: AssetExecutionContext, object_store: ObjectStoreResource, warehouse: WarehouseResource
) -> Iterator[MaterializeResult | Output[None]]:
    store = object_store.get_store()
    keys = list(context.partition_keys)
    reports = reported_days(context.instance, keys)
    incomplete = [r for r in reports.values() if not r.complete]
    if incomplete:
        lines = [f"{r.partition}: {r.what_is_missing()}" for r in incomplete]
        raise Failure(
            description=(
                f"refusing to write daily aggregates for {len(incomplete)} incomplete day(s): "
                + " | ".join(lines)
                + ". Aggregates are written only for complete days; re-materialize production/productions "
                "once the day's data has landed (or its gap is recorded)."
            ),
            metadata={
                "incomplete_days": MetadataValue.json({r.partition: r.what_is_missing() for r in incomplete})
            },
            allow_retries=False,
        )
    verdicts: list[Verdict] = []
    for pk in keys:
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
        lots = lot_rows(line, date, frame)
        day_keys = {"line": line, "date": row["date"]}
        warehouse.replace_partition(
            [
                (DAILY_LINE_AGGREGATES, day_keys, [row]),
                (DAILY_SET_BY_BREAKDOWN, day_keys, parts),
                (LOTS, day_keys, lots),
            ]
        )
        stored = warehouse.fetch(DAILY_LINE_AGGREGATES, day_keys)
        counts = {
            "warehouse_productions": stored[0]["productions"] if stored else None,
            "breakdown_productions": sum(
                p["productions"] for p in warehouse.fetch(DAILY_SET_BY_BREAKDOWN, day_keys)
            ),
            "lots": len(warehouse.fetch(LOTS, day_keys)),
        }
        matches = all(n == frame.height for n in counts.values())
        qs = [row["quality_p10"], row["quality_p50"], row["quality_p90"], row["quality_mean"]]
        quality_ok = not (
            any(q is not None and not 0.0 <= q <= 100.0 for q in qs)
            or (None not in qs[:3] and not qs[0] <= qs[1] <= qs[2])
        )
        severity = AssetCheckSeverity.ERROR
        quality = {
            k: row[k]
            for k in ("quality_p10", "quality_p50", "quality_p90", "quality_mean")
            if row[k] is not None
        }
        verdicts += [
            Verdict(
                "aggregates_match_productions",
                str(pk),
                matches,
                severity,
                {"parquet_rows": frame.height, **counts},
            ),
            Verdict("aggregates_quality_range", str(pk), quality_ok, severity, quality),
        ]
        context.add_asset_metadata(
            _partition_metadata(row, parts, len(lots), frame.height, warehouse.describe())
            | check_metadata(
                {"aggregates_match_productions": matches, "aggregates_quality_range": quality_ok}
            ),
            partition_key=pk,
        )
    # Run-scoped metadata lands on every partition's event: only what holds for each of them.
    yield MaterializeResult(metadata={"run_partitions": len(keys)})
    # Then both checks' verdicts on each partition, recorded on that partition (see partition_checks.py).
    yield from report(context, AGGREGATES_KEY, verdicts)


PREVIEW = ("line", "date", "productions", "quality_mean", "quality_p10", "quality_p50", "quality_p90", "faults",
           "energy_kwh")  # fmt: skip


def _partition_metadata(
    row: dict[str, Any], parts: list[dict[str, Any]], lots: int, productions: int, where: str
) -> dict[str, Any]:
    """One partition's figures: its warehouse row (numbers plot across partitions), previews, schemas."""
    md: dict[str, Any] = {
        "dagster/row_count": 1,
        "dagster/column_schema": table_schema(DAILY_LINE_AGGREGATES),
        "productions": productions,
        "breakdown_rows": len(parts),
        "breakdown_schema": table_schema(DAILY_SET_BY_BREAKDOWN),
        "lots": lots,
        "lots_schema": table_schema(LOTS),
        "warehouse": where,
        "preview": MetadataValue.md(md_table(pl.DataFrame([row]).select(PREVIEW))),
        "breakdown_preview": MetadataValue.md(md_table(pl.DataFrame(parts)) if parts else "_none_"),
    }
    for name in ("quality_mean", "quality_p10", "quality_p50", "quality_p90", "energy_kwh", "faults"):
        if row.get(name) is not None:
            md[name] = row[name]
    return md
