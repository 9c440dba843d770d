"""Automation of the production table: refresh a partition whenever raw objects land that it reads.

Why not `eager()`: eager only considers the latest time window, but a late raw object must re-materialize
the (older) partitions it touches; and it skips partitions with a missing dependency, while today's table
must refresh before tomorrow's raw partition exists. So: any dependency updated since the partition was
last handled, nothing in progress. Raw events arrive from the raw-objects sensor (every 30 s), the
automation sensor evaluates every 30 s, so a production shows up within a minute or two of its object.

Why the extra `RawWindowTouched`: day D reads only the last `lookback_s` of D-1 and the first
`lookahead_s` of D+1 (production/compute.py), but the partition mapping can only say "D-1, D, D+1". With
the built-in part alone every object of today re-materialized yesterday's table as well: two partitions
per request, which the automation sensor turns into a backfill (one more hop through the backfill
daemon, every 30 s) whose run computes yesterday before today. This condition keeps a candidate only when an event newer
than its last planned run is on the day itself, or on a neighbouring day with data inside the window
the table reads (the raw events' `first_sample`/`last_sample`, gap events' `lost_from`/`lost_to`; an
event without them counts). It runs on the user-code server (`use_user_code_server=True`) and reads a
few indexed records per candidate; candidates are what the cheap built-in conditions left.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from dagster import (
    AssetRecordsFilter,
    AutomationCondition,
    AutomationContext,
    AutomationResult,
    DagsterInstance,
)

from factory_assets.production.completeness import PRODUCTIONS_KEY
from factory_assets.production.compute import DEFAULT_LOOKAHEAD_S, DEFAULT_LOOKBACK_S
from factory_assets.raw.assets import GAPS_ASSET_KEY, RAW_ASSET_KEY
from factory_assets.raw.partitions import line_day_key, split_key

SCAN_LIMIT = 100  # newer events per neighbouring partition looked at; beyond that, refresh anyway


def _seconds(metadata: dict[str, object], *names: str) -> float | None:
    for name in names:
        entry = metadata.get(name)
        if entry is not None:
            return float(getattr(entry, "value", entry))  # type: ignore[arg-type]
    return None


def _neighbour_touches(
    instance: DagsterInstance, partition: str, after: int | None, reads: tuple[float, float]
) -> bool:
    """Has a raw or gap event on `partition` newer than storage id `after` data inside [reads)?"""
    for key in (RAW_ASSET_KEY, GAPS_ASSET_KEY):
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[partition], after_storage_id=after),
            limit=SCAN_LIMIT,
        ).records
        if len(records) == SCAN_LIMIT:
            return True
        for record in records:
            mat = record.asset_materialization
            md = dict(mat.metadata) if mat else {}
            first = _seconds(md, "first_sample", "lost_from")
            last = _seconds(md, "last_sample", "lost_to")
            if first is None or last is None or (first < reads[1] and last >= reads[0]):
                return True
    return False


def _own_updated(instance: DagsterInstance, partition: str, after: int | None) -> bool:
    return any(
        instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[partition], after_storage_id=after), limit=1
        ).records
        for key in (RAW_ASSET_KEY, GAPS_ASSET_KEY)
    )


def needs_refresh(instance: DagsterInstance, partition: str) -> bool:
    """Did raw data the table of `partition` reads land after its last planned run (or is it new)?"""
    planned = instance.event_log_storage.get_latest_planned_materialization_info(PRODUCTIONS_KEY, partition)
    after = planned.storage_id if planned else None
    if _own_updated(instance, partition, after):
        return True
    line, date = split_key(partition)
    day = dt.date.fromisoformat(date)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    end = start + 86_400
    prev, nxt = (str(line_day_key(line, (day + dt.timedelta(days=k)).isoformat())) for k in (-1, 1))
    return _neighbour_touches(
        instance, prev, after, (start - DEFAULT_LOOKBACK_S, start)
    ) or _neighbour_touches(instance, nxt, after, (end, end + DEFAULT_LOOKAHEAD_S))


class RawWindowTouched(AutomationCondition):
    """True for partitions whose own raw data, or a neighbour's data inside the read window, is new."""

    @property
    def name(self) -> str:
        return "raw_window_touched"

    @property
    def description(self) -> str:
        return "new raw data on the day, or in the hour before/after it that the table reads"

    def evaluate(self, context: AutomationContext) -> AutomationResult:  # type: ignore[override]
        instance = context.asset_graph_view.instance
        keys: Iterable[str] = context.candidate_subset.expensively_compute_partition_keys()
        touched = {pk for pk in keys if needs_refresh(instance, pk)}
        true_subset = context.candidate_subset.compute_intersection_with_partition_keys(touched)
        return AutomationResult(context=context, true_subset=true_subset)


PRODUCTIONS_CONDITION = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
    & RawWindowTouched()
).with_label("raw_objects_landed")
