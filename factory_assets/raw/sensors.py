"""Sensor recording newly landed raw and gap objects: one event per (line, day) partition and tick.

Why one event per partition, not per object: downstream automation reacts per (line, day) partition, and
every event is instance writes (SQLite or Postgres) that UI pages over the raw asset's partitions read
back. Recording each of a year of ten lines' ~1 M objects cost ~11 ms and two instance writes each (and
a full decode); one event per partition and tick costs one write per partition however many objects
landed in it. The event names its manifest (raw/manifest.py: every object's key, group, size and
sequence ranges, under `manifests/` in the store) and carries the totals and merged sequence ranges.

Why headers only: everything the event says is in each object's header, read with one ranged read.
A header that fails validation (magic, CRC-32, schema, body length, zstd frame header) is quarantined
here and observed on its partition; damage inside the body is found by the production table, which
verifies every body's SHA-256 when it decodes it and quarantines the object there (same quarantine).

Listing is incremental and bounded (raw/scan.py); header reads run on a small thread pool (S3 latency).
A late object lands in a later tick's event on its own partition, so automation re-runs exactly the
partitions it touches (the production table's D-1, D, D+1 mapping).
"""

import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
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
from factory_assets.raw.manifest import (
    GapObjectSummary,
    RawObjectSummary,
    describe_gaps,
    describe_raw,
    manifest_document,
    merged_ranges,
)
from factory_assets.raw.partitions import configured_lines, configured_start_date, line_day_key
from factory_assets.raw.quarantine import quarantine
from factory_assets.raw.scan import KINDS, LineCursor, scan_new_keys
from factory_assets.resources.object_store import ObjectStoreResource
from factory_core.layout import manifest_prefix
from factory_core.rawformat import RawFormatError
from factory_core.store import ObjectStore

CURSOR_VERSION = 1
INLINE_KEYS = 20  # an event lists its object keys inline up to this many (always all in its manifest)


def _seconds(t_ns: int) -> float:
    return t_ns / 1e9


def _common(kind: str, line: str, date: str, keys: list[str], manifest: str, n_bytes: int) -> dict[str, Any]:
    keys = sorted(keys)
    md: dict[str, Any] = {
        "objects": len(keys),
        "manifest": MetadataValue.path(manifest),
        "manifests_of_partition": MetadataValue.path(manifest_prefix(kind, line, date)),
        "first_key": MetadataValue.path(keys[0]),
        "last_key": MetadataValue.path(keys[-1]),
        "bytes": n_bytes,
    }
    if len(keys) <= INLINE_KEYS:
        md["keys"] = MetadataValue.json(keys)
    return md


def raw_partition_event(
    line: str, date: str, summaries: Sequence[RawObjectSummary], manifest: str
) -> AssetMaterialization:
    """The raw partition's event for the objects that landed in it during one tick."""
    keys = [s.key for s in summaries]
    firsts = [c.t_first_ns for s in summaries for c in s.channels if c.t_first_ns is not None]
    lasts = [c.t_last_ns for s in summaries for c in s.channels if c.t_last_ns is not None]
    names = sorted({c.name for s in summaries for c in s.channels})
    md = _common("raw", line, date, keys, manifest, sum(s.bytes for s in summaries))
    md.update(
        {
            "groups": ", ".join(sorted({s.group for s in summaries})),
            "channels": len(names),
            "channel_names": ", ".join(names),
            "samples": sum(s.samples for s in summaries),
            "sequence_ranges": MetadataValue.json(merged_ranges(summaries)),
            "read": "header (body SHA-256 verified by the production table)",
        }
    )
    if firsts:
        md["first_sample"] = MetadataValue.timestamp(_seconds(min(firsts)))
        md["last_sample"] = MetadataValue.timestamp(_seconds(max(lasts)))
    n = len(keys)
    return AssetMaterialization(
        asset_key=RAW_ASSET_KEY,
        partition=line_day_key(line, date),
        description=f"{n} raw object{'s' if n != 1 else ''} landed; every key in {manifest}",
        metadata=md,
    )


def gap_partition_event(
    line: str, date: str, summaries: Sequence[GapObjectSummary], manifest: str
) -> AssetMaterialization:
    """The gap ledger partition's event for the gap objects that landed in it during one tick."""
    gaps = [g for s in summaries for g in s.records]
    lost = [
        {"channel": g.channel_name, "from_seq": g.lost_from_seq, "to_seq": g.lost_to_seq, "reason": g.reason}
        for g in gaps
    ]
    md = _common("gaps", line, date, [s.key for s in summaries], manifest, sum(s.bytes for s in summaries))
    md.update(
        {
            "records": len(gaps),
            "lost_samples": sum(g.lost_to_seq - g.lost_from_seq for g in gaps),
            "lost_ranges": MetadataValue.json(lost),
            "lost_from": MetadataValue.timestamp(_seconds(min(g.lost_from_ns for g in gaps))),
            "lost_to": MetadataValue.timestamp(_seconds(max(g.lost_to_ns for g in gaps))),
        }
    )
    return AssetMaterialization(
        asset_key=GAPS_ASSET_KEY,
        partition=line_day_key(line, date),
        description=f"{len(summaries)} gap object(s) landed; every key in {manifest}",
        metadata=md,
    )


def _line_date_of(key: str) -> tuple[str, str]:
    parts = key.split("/")
    try:
        return parts[1].removeprefix("line="), parts[2].removeprefix("date=")
    except IndexError:
        return "", ""


def _corrupt(
    store: ObjectStore, kind: str, key: str, error: RawFormatError, data: bytes | None
) -> AssetObservation:
    """Quarantine a corrupt object (its bytes and a reason) and observe it on its partition."""
    qkey = quarantine(store, key, store.get(key) if data is None else data, str(error))
    line, date = _line_date_of(key)
    return AssetObservation(
        asset_key=RAW_ASSET_KEY if kind == "raw" else GAPS_ASSET_KEY,
        partition=line_day_key(line, date) if line else None,
        description=f"corrupt object {key} quarantined: {error}",
        metadata={"quarantined_key": MetadataValue.path(qkey), "key": key, "reason": str(error)},
    )


def _describe(
    store: ObjectStore, kind: str, key: str
) -> RawObjectSummary | GapObjectSummary | AssetObservation:
    try:
        if kind == "raw":
            return describe_raw(store, key)
        return describe_gaps(store, key)[0]
    except RawFormatError as exc:
        return _corrupt(store, kind, key, exc, None)


def record_events(
    store: ObjectStore, found: Sequence[tuple[str, str]], workers: int = 8
) -> list[AssetMaterialization | AssetObservation]:
    """Events for newly found (kind, key)s: one materialization per (kind, line, date) with its manifest
    written to the store first (the event never names a manifest that is not there), one observation per
    corrupt object. Events are ordered by kind, line and date."""
    if workers > 1 and len(found) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            described = list(pool.map(lambda item: _describe(store, *item), found))
    else:
        described = [_describe(store, kind, key) for kind, key in found]
    groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    corrupt: list[AssetMaterialization | AssetObservation] = []
    for (kind, _), item in zip(found, described, strict=True):
        if isinstance(item, AssetObservation):
            corrupt.append(item)
        else:
            groups[(kind, item.line, item.date)].append(item)
    events: list[AssetMaterialization | AssetObservation] = []
    for (kind, line, date), summaries in sorted(groups.items()):
        mkey, data = manifest_document(kind, line, date, summaries)
        store.put(mkey, data)
        build = raw_partition_event if kind == "raw" else gap_partition_event
        events.append(build(line, date, summaries, mkey))
    return events + corrupt


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
    max_keys_per_tick: int = 5000,
    time_budget_s: float = 40.0,
    workers: int = 8,
    today: Callable[[], dt.date] | None = None,
    minimum_interval_seconds: int = 30,
) -> SensorDefinition:
    """The raw-objects sensor; parameters exist so tests can pin `today` and shrink budgets.

    5000 keys per tick: header reads are ~0.1 ms each from a local disk and a few ms from S3 on 8
    threads, well inside the 40 s budget (which also stops a tick early), and a year of history is
    recorded in a few hundred ticks."""
    sensor_lines = list(lines or configured_lines())
    first_date = configured_start_date()

    def _today() -> dt.date:
        return today() if today else dt.datetime.now(dt.UTC).date()

    @sensor(
        name="raw_objects_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Lists new raw/ and gaps/ objects per line (incremental, durable cursor), reads each raw "
            "object's header and records one materialization per (line, date) partition and tick, naming "
            "a manifest (manifests/ in the store) with every object's key and sequence ranges. Objects "
            "whose header is corrupt are quarantined."
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
        events = record_events(store, found, workers)
        for event in events:
            if isinstance(event, AssetObservation):
                context.log.error(event.description)
        context.log.info(f"recorded {len(found)} new objects in {len(events)} events")
        return SensorResult(asset_events=events, cursor=dump_cursor(state))

    return raw_objects_sensor
