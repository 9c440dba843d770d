"""Sensor recording newly landed decision-log segments as materializations of their (line, date) partition.

Why the raw sensor's machinery: decision segments live under decisions/line={line}/date={day}/ exactly as
raw objects do under raw/, so the same incremental listing (factory_assets.raw.scan: catch-up in key order
with StartAfter, a late window diffed against key hashes, a per-tick key budget and deadline, a durable
JSON cursor) finds them without ever re-listing the bucket. The inference server uploads its spool oldest
first after an outage, so the late window is two days by default (a store outage of a day is absorbed).
A segment that does not decode is quarantined with its reason and recorded as an observation.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dagster import (
    AssetMaterialization,
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from factory_assets.decisions.assets import DECISION_LOG_KEY
from factory_assets.raw.partitions import configured_lines, configured_start_date, line_day_key
from factory_assets.raw.quarantine import quarantine
from factory_assets.raw.scan import scan_new_keys
from factory_assets.raw.sensors import dump_cursor, load_cursor
from factory_assets.resources.object_store import ObjectStoreResource
from factory_core.decisionlog import DecisionFormatError, decode_decisions
from factory_core.store import ObjectStore

KIND = "decisions"
SENSOR_NAME = "decision_log_sensor"


def _line_date(key: str) -> tuple[str, str]:
    parts = key.split("/")
    return parts[1].removeprefix("line="), parts[2].removeprefix("date=")


def decision_event(key: str, data: bytes) -> AssetMaterialization:
    """Materialization of the segment's partition: how many decisions, answered or refused, and by whom."""
    records = decode_decisions(data)
    line, date = _line_date(key)
    status = Counter(str(r.get("status")) for r in records)
    reasons = Counter(str(r.get("outcome")) for r in records if r.get("status") != 200)
    versions = Counter(str(r.get("model_version")) for r in records if r.get("status") == 200)
    stamps = sorted(str(r["ts"]) for r in records if isinstance(r.get("ts"), str))
    metadata: dict[str, Any] = {
        "key": MetadataValue.path(key),
        "decisions": len(records),
        "answered": status.get("200", 0),
        "fallbacks": len(records) - status.get("200", 0),
        "fallback_reasons": MetadataValue.json(dict(sorted(reasons.items()))),
        "model_versions": MetadataValue.json(dict(sorted(versions.items()))),
        "bytes": len(data),
    }
    if stamps:
        metadata["first_decision"] = stamps[0]
        metadata["last_decision"] = stamps[-1]
    return AssetMaterialization(
        asset_key=DECISION_LOG_KEY,
        partition=line_day_key(line, date),
        description=f"decision segment {key}",
        metadata=metadata,
    )


def _event_for(store: ObjectStore, key: str) -> AssetMaterialization | AssetObservation:
    data = store.get(key)
    try:
        return decision_event(key, data)
    except DecisionFormatError as exc:
        qkey = quarantine(store, key, data, str(exc))
        line, date = _line_date(key)
        return AssetObservation(
            asset_key=DECISION_LOG_KEY,
            partition=line_day_key(line, date),
            description=f"corrupt decision segment {key} quarantined: {exc}",
            metadata={"quarantined_key": MetadataValue.path(qkey), "key": key, "reason": str(exc)},
        )


def build_decision_log_sensor(
    lines: list[str] | None = None,
    late_days: int = 2,
    max_keys_per_tick: int = 500,
    time_budget_s: float = 40.0,
    workers: int = 8,
    today: Callable[[], dt.date] | None = None,
    minimum_interval_seconds: int = 60,
) -> SensorDefinition:
    """The decision-log sensor; parameters exist so tests can pin `today` and shrink budgets."""
    sensor_lines = list(lines or configured_lines())
    first_date = configured_start_date()

    def _today() -> dt.date:
        return today() if today else dt.datetime.now(dt.UTC).date()

    @sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Lists new decisions/ segments per line (incremental, durable cursor shared with the raw "
            "sensor's scan) and records each as a materialization of decisions/decision_log on its "
            "(line, date) partition. Corrupt segments are quarantined."
        ),
    )
    def decision_log_sensor(
        context: SensorEvaluationContext, object_store: ObjectStoreResource
    ) -> SensorResult:
        store = object_store.get_store()
        state = load_cursor(context.cursor, kinds=(KIND,), sensor_name=SENSOR_NAME)
        found = scan_new_keys(
            store, state, sensor_lines, _today(), late_days, max_keys_per_tick,
            time.monotonic() + time_budget_s, first_date,
        )  # fmt: skip
        with ThreadPoolExecutor(max_workers=workers) as pool:
            events = list(pool.map(lambda item: _event_for(store, item[1]), found))
        for event in events:
            if isinstance(event, AssetObservation):
                context.log.error(event.description)
        context.log.info(f"recorded {len(events)} new decision segments")
        return SensorResult(asset_events=events, cursor=dump_cursor(state))

    return decision_log_sensor
