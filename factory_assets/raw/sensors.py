"""Sensor recording newly landed raw and gap objects as materializations of their partitions.

Why a sensor with asset events (not a run per file): a day has hundreds of objects per line; recording
them as AssetMaterializations costs no run, and the automation of the production table reacts to them.
Listing is incremental and bounded (see raw/scan.py); decoding runs on a small thread pool.
"""

import datetime as dt
import json
import time
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

from factory_assets.raw.assets import GAPS_ASSET_KEY, RAW_ASSET_KEY
from factory_assets.raw.partitions import configured_lines, configured_start_date, line_day_key
from factory_assets.raw.quarantine import quarantine
from factory_assets.raw.scan import KINDS, LineCursor, scan_new_keys
from factory_assets.resources.object_store import ObjectStoreResource
from factory_core.layout import parse_key
from factory_core.rawformat import RawFormatError, decode_batch, decode_gaps
from factory_core.store import ObjectStore

CURSOR_VERSION = 1


def _seconds(t_ns: int) -> float:
    return t_ns / 1e9


def raw_event(key: str, data: bytes) -> AssetMaterialization:
    """Materialization of the raw object's partition, with what the object holds."""
    batch = decode_batch(data)
    info = parse_key(key)
    ranges = {b.name: [b.first_seq, b.first_seq + b.count] for b in batch.blocks}
    firsts = [int(b.t_ns[0]) for b in batch.blocks if b.count]
    lasts = [int(b.t_ns[-1]) for b in batch.blocks if b.count]
    metadata: dict[str, Any] = {
        "key": MetadataValue.path(key),
        "group": batch.group,
        "channels": len(batch.blocks),
        "channel_names": ", ".join(b.name for b in batch.blocks),
        "sequence_ranges": MetadataValue.json(ranges),
        "samples": sum(b.count for b in batch.blocks),
        "bytes": len(data),
    }
    if firsts:
        metadata["first_sample"] = MetadataValue.timestamp(_seconds(min(firsts)))
        metadata["last_sample"] = MetadataValue.timestamp(_seconds(max(lasts)))
    return AssetMaterialization(
        asset_key=RAW_ASSET_KEY,
        partition=line_day_key(str(info.line), str(info.date)),
        description=f"raw object {key}",
        metadata=metadata,
    )


def gap_event(key: str, data: bytes) -> AssetMaterialization:
    """Materialization of the gap ledger's partition, with the lost ranges."""
    gaps = decode_gaps(data)
    info = parse_key(key)
    lost = [
        {"channel": g.channel_name, "from_seq": g.lost_from_seq, "to_seq": g.lost_to_seq, "reason": g.reason}
        for g in gaps
    ]
    return AssetMaterialization(
        asset_key=GAPS_ASSET_KEY,
        partition=line_day_key(str(info.line), str(info.date)),
        description=f"gap object {key}",
        metadata={
            "key": MetadataValue.path(key),
            "records": len(gaps),
            "lost_samples": sum(g.lost_to_seq - g.lost_from_seq for g in gaps),
            "lost_ranges": MetadataValue.json(lost),
            "lost_from": MetadataValue.timestamp(_seconds(min(g.lost_from_ns for g in gaps))),
            "lost_to": MetadataValue.timestamp(_seconds(max(g.lost_to_ns for g in gaps))),
        },
    )


def _event_for(store: ObjectStore, kind: str, key: str) -> AssetMaterialization | AssetObservation:
    """Decode one object into its event; a corrupt one is quarantined and observed instead."""
    data = store.get(key)
    try:
        return raw_event(key, data) if kind == "raw" else gap_event(key, data)
    except RawFormatError as exc:
        qkey = quarantine(store, key, data, str(exc))
        info_line, info_date = _line_date_of(key)
        return AssetObservation(
            asset_key=RAW_ASSET_KEY if kind == "raw" else GAPS_ASSET_KEY,
            partition=line_day_key(info_line, info_date) if info_line else None,
            description=f"corrupt object {key} quarantined: {exc}",
            metadata={"quarantined_key": MetadataValue.path(qkey), "key": key, "reason": str(exc)},
        )


def _line_date_of(key: str) -> tuple[str, str]:
    parts = key.split("/")
    try:
        return parts[1].removeprefix("line="), parts[2].removeprefix("date=")
    except IndexError:
        return "", ""


def load_cursor(
    raw: str | None, kinds: tuple[str, ...] = KINDS, sensor_name: str = "raw_objects_sensor"
) -> dict[str, dict[str, LineCursor]]:
    """Parse a listing sensor's cursor ({kind: {line: LineCursor}}); an empty cursor starts from the
    beginning. Shared by every sensor that lists `{kind}/line=/date=/` prefixes (raw, gaps, decisions)."""
    state: dict[str, dict[str, LineCursor]] = {k: {} for k in kinds}
    if not raw:
        return state
    doc = json.loads(raw)
    if doc.get("v") != CURSOR_VERSION:
        raise ValueError(f"{sensor_name} cursor version {doc.get('v')!r} is not {CURSOR_VERSION}")
    for kind in kinds:
        for line, data in doc.get(kind, {}).items():
            state[kind][line] = LineCursor.from_json(data)
    return state


def dump_cursor(state: dict[str, dict[str, LineCursor]]) -> str:
    doc: dict[str, Any] = {"v": CURSOR_VERSION}
    for kind in sorted(state):
        doc[kind] = {line: c.to_json() for line, c in sorted(state[kind].items())}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def build_raw_objects_sensor(
    lines: list[str] | None = None,
    late_days: int = 1,
    max_keys_per_tick: int = 500,
    time_budget_s: float = 40.0,
    workers: int = 8,
    today: Callable[[], dt.date] | None = None,
    minimum_interval_seconds: int = 30,
) -> SensorDefinition:
    """The raw-objects sensor; parameters exist so tests can pin `today` and shrink budgets."""
    sensor_lines = list(lines or configured_lines())
    first_date = configured_start_date()

    def _today() -> dt.date:
        return today() if today else dt.datetime.now(dt.UTC).date()

    @sensor(
        name="raw_objects_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Lists new raw/ and gaps/ objects per line (incremental, durable cursor) and records each as a "
            "materialization of its (line, date) partition. Corrupt objects are quarantined."
        ),
    )
    def raw_objects_sensor(
        context: SensorEvaluationContext, object_store: ObjectStoreResource
    ) -> SensorResult:
        store = object_store.get_store()
        state = load_cursor(context.cursor)
        found = scan_new_keys(
            store, state, sensor_lines, _today(), late_days, max_keys_per_tick,
            time.monotonic() + time_budget_s, first_date,
        )  # fmt: skip
        with ThreadPoolExecutor(max_workers=workers) as pool:
            events = list(pool.map(lambda item: _event_for(store, *item), found))
        for event in events:
            if isinstance(event, AssetObservation):
                context.log.error(event.description)
        context.log.info(f"recorded {len(events)} new objects")
        return SensorResult(asset_events=events, cursor=dump_cursor(state))

    return raw_objects_sensor
