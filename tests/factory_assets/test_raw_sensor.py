"""The raw-objects sensor: incremental listing with a durable cursor over thousands of keys, late objects,
one event per partition and tick naming a manifest of every object, a partition's objects found from its
events in the instance, and quarantine of corrupt objects (header at the sensor, body at the reader)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetMaterialization,
    AssetObservation,
    AssetRecordsFilter,
    DagsterInstance,
    build_sensor_context,
)

from factory_assets.raw.assets import RAW_ASSET_KEY
from factory_assets.raw.manifest import read_manifest
from factory_assets.raw.reading import load_window
from factory_assets.raw.scan import LineCursor, scan_line
from factory_assets.raw.sensors import build_raw_objects_sensor, dump_cursor, load_cursor
from factory_assets.resources import LocalObjectStoreResource, S3ObjectStoreResource
from factory_core.rawformat import RawFormatError, decode_batch
from factory_core.store import LocalDirStore
from tests.support.assets import LINE, put_small_object

START = dt.date(2026, 1, 1)
DAYS = 40
PER_DAY = 50


class CountingStore:
    """Wraps a store and counts listings and listed keys (to prove ticks stay bounded)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lists: list[tuple[str, str | None]] = []
        self.listed = 0

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        self.lists.append((prefix, start_after))
        for key in self.inner.list(prefix, start_after=start_after):
            self.listed += 1
            yield key

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _key(date: dt.date, i: int, group: str = "all") -> str:
    hour = i % 24
    stamp = f"{date:%Y%m%d}T{hour:02d}{i % 60:02d}00000000"
    return f"raw/line={LINE}/date={date}/hour={hour:02d}/{LINE}_{group}_{stamp}_{i:016x}.fsr"


def _fill(store: LocalDirStore, days: int = DAYS) -> list[str]:
    keys = [_key(START + dt.timedelta(days=d), i) for d in range(days) for i in range(PER_DAY)]
    for k in keys:
        store.put(k, b"x")
    return keys


def test_scan_walks_thousands_of_keys_across_ticks_without_relisting(tmp_path: Path) -> None:
    store = CountingStore(LocalDirStore(tmp_path))
    keys = _fill(store.inner)
    today = START + dt.timedelta(days=DAYS - 1)
    cursor = LineCursor()
    seen: list[str] = []
    ticks = 0
    while True:
        ticks += 1
        # Round-trip the cursor through JSON every tick, as Dagster stores it.
        cursor = LineCursor.from_json(json.loads(json.dumps(cursor.to_json())))
        res = scan_line(store, "raw", LINE, cursor, today, 1, 700, deadline=float("inf"))
        seen += res.keys
        if res.exhausted:
            break
    assert sorted(seen) == sorted(keys) and len(seen) == len(set(seen))
    assert ticks == -(-len(keys) // 700)
    # A quiet tick lists only the late window (2 dates) plus one empty catch-up page: no full re-listing.
    store.lists.clear()
    store.listed = 0
    res = scan_line(store, "raw", LINE, cursor, today, 1, 700, deadline=float("inf"))
    assert res.keys == [] and res.exhausted
    assert store.listed == 2 * PER_DAY + 1  # + the first window key that stops the catch-up page
    assert all(prefix.startswith(f"raw/line={LINE}/") for prefix, _ in store.lists)
    assert len(store.lists) == 3
    # New keys: today's, a late one for yesterday that sorts before keys already seen, and one too late.
    new_today = _key(today, 999, group="aaa")
    late_yesterday = _key(today - dt.timedelta(days=1), 998, group="aaa")
    too_late = _key(today - dt.timedelta(days=5), 997, group="aaa")
    for k in (new_today, late_yesterday, too_late):
        store.inner.put(k, b"x")
    res = scan_line(store, "raw", LINE, cursor, today, 1, 700, deadline=float("inf"))
    assert sorted(res.keys) == sorted([new_today, late_yesterday])
    # The next day: yesterday leaves the window and is skipped from then on.
    tomorrow = today + dt.timedelta(days=1)
    res = scan_line(store, "raw", LINE, cursor, tomorrow, 1, 700, deadline=float("inf"))
    assert res.keys == []
    assert cursor.after is not None and cursor.after.startswith(
        f"raw/line={LINE}/date={today - dt.timedelta(days=1)}/"
    )


def test_scan_stops_at_deadline_and_resumes(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    keys = _fill(store, days=5)
    today = START + dt.timedelta(days=DAYS + 10)
    calls = iter(range(10**6))
    cursor = LineCursor()
    res = scan_line(store, "raw", LINE, cursor, today, 1, 10**6, deadline=100, clock=lambda: next(calls))
    assert not res.exhausted and len(res.keys) == 101  # clock readings 0..100 are within the deadline
    res2 = scan_line(store, "raw", LINE, cursor, today, 1, 10**6, deadline=float("inf"))
    assert res2.exhausted
    assert res.keys + res2.keys == sorted(keys)


def _events(result: Any) -> list[Any]:
    return list(result.asset_events)


def _manifest_keys(store: Any, event: Any) -> list[str]:
    return [o["key"] for o in read_manifest(store, event.metadata["manifest"].value)["objects"]]


def test_sensor_records_one_event_per_partition_naming_every_object_and_quarantines_a_corrupt_header(
    tmp_path: Path,
) -> None:
    store = LocalDirStore(tmp_path)
    day0 = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    t0 = int(day0.timestamp()) * 10**9
    good = [put_small_object(store, LINE, t0 + k * 3_600 * 10**9) for k in range(30)]  # spans two days
    corrupt_key = good[3]
    data = store.get(corrupt_key)
    store.put(corrupt_key, data[:30] + bytes([data[30] ^ 0xFF]) + data[31:])  # a header byte flipped
    sensor = build_raw_objects_sensor(lines=[LINE], today=lambda: dt.date(2026, 2, 2))
    resource = LocalObjectStoreResource(root=str(tmp_path))
    result = sensor(build_sensor_context(cursor=None, resources={"object_store": resource}))
    events = _events(result)
    mats = [e for e in events if isinstance(e, AssetMaterialization)]
    obs = [e for e in events if isinstance(e, AssetObservation)]
    # One event per (line, day) partition, however many objects landed in it.
    assert len(mats) == 2 and len(obs) == 1
    assert [m.partition for m in mats] == ["2026-02-01|L1", "2026-02-02|L1"]
    assert all(m.asset_key == RAW_ASSET_KEY for m in mats)
    recorded = [k for m in mats for k in _manifest_keys(store, m)]
    assert sorted(recorded) == sorted(k for k in good if k != corrupt_key)
    first = mats[0]
    assert first.metadata["objects"].value == 24 - 1  # day one's 24 hours, one corrupt
    assert first.metadata["samples"].value == 23 * 10
    assert first.metadata["channels"].value == 1
    # Sequence ranges from the headers: one [from, to) range per 10-sample object (hours apart).
    ranges = first.metadata["sequence_ranges"].value["production_id"]
    assert len(ranges) == 23 and all(hi - lo == 10 for lo, hi in ranges)
    manifest = read_manifest(store, first.metadata["manifest"].value)
    assert manifest["read"] == "header" and all(o["samples"] == 10 for o in manifest["objects"])
    # The corrupt header is quarantined (bytes + reason) and observed on its partition.
    assert corrupt_key in obs[0].description and "checksum" in obs[0].description
    assert obs[0].partition == "2026-02-01|L1"
    assert store.exists(f"quarantine/{corrupt_key}")
    reason = json.loads(store.get(f"quarantine/{corrupt_key}.reason.json"))
    assert reason["key"] == corrupt_key and reason["reason"]
    # Same cursor, nothing new: no events. A late object: one event on exactly its own partition.
    ctx2 = build_sensor_context(cursor=result.cursor, resources={"object_store": resource})
    assert _events(sensor(ctx2)) == []
    late = put_small_object(store, LINE, t0 + 86_400 * 10**9 + 1_800 * 10**9, group="late")
    ctx3 = build_sensor_context(cursor=result.cursor, resources={"object_store": resource})
    (event3,) = _events(sensor(ctx3))
    assert event3.partition == "2026-02-02|L1"
    assert event3.metadata["keys"].value == [late] and _manifest_keys(store, event3) == [late]
    assert load_cursor(dump_cursor(load_cursor(result.cursor))).keys() == {"raw", "gaps"}


def test_a_damaged_body_passes_the_header_read_and_is_quarantined_by_the_production_table(
    tmp_path: Path,
) -> None:
    """The sensor reads headers only: a body truncated after its frame header is recorded (the header is
    sound), and decode_batch, which the production table runs on every object it reads, rejects it."""
    store = LocalDirStore(tmp_path)
    t0 = int(dt.datetime(2026, 2, 1, 5, tzinfo=dt.UTC).timestamp()) * 10**9
    key = put_small_object(store, LINE, t0)
    store.put(key, store.get(key)[:-7])
    sensor = build_raw_objects_sensor(lines=[LINE], today=lambda: dt.date(2026, 2, 1))
    resource = LocalObjectStoreResource(root=str(tmp_path))
    (event,) = _events(sensor(build_sensor_context(resources={"object_store": resource})))
    assert isinstance(event, AssetMaterialization) and _manifest_keys(store, event) == [key]
    with pytest.raises(RawFormatError, match=r"truncated|zstd"):
        decode_batch(store.get(key))
    # The production table's reader quarantines it (test_materialize covers the whole run).
    window = load_window(store, LINE, t0 - 3_600 * 10**9, t0 + 3_600 * 10**9, 0, [])
    assert [k for k, _ in window.quarantined] == [key] and store.exists(f"quarantine/{key}")


def test_a_partitions_objects_are_found_from_its_materializations_in_the_instance(tmp_path: Path) -> None:
    """What a data team member does from the UI: open the partition's events, follow `manifest` (one
    tick) or `manifests_of_partition` (every tick), and get every object key of the partition."""
    store = LocalDirStore(tmp_path / "objects")
    t0 = int(dt.datetime(2026, 2, 1, tzinfo=dt.UTC).timestamp()) * 10**9
    first = [
        put_small_object(store, LINE, t0 + k * 600 * 10**9, group=g) for k in range(40) for g in ("a", "b")
    ]
    sensor = build_raw_objects_sensor(lines=[LINE], today=lambda: dt.date(2026, 2, 1))
    resource = LocalObjectStoreResource(root=str(store.root))
    with DagsterInstance.ephemeral() as instance:
        cursor = None
        late_t = t0 + 20 * 3_600 * 10**9 + 7 * 10**9
        for tick in range(2):
            batch = first if tick == 0 else [put_small_object(store, LINE, late_t, group="c")]
            ctx = build_sensor_context(instance=instance, cursor=cursor, resources={"object_store": resource})
            result = sensor(ctx)
            for event in result.asset_events:
                instance.report_runless_asset_event(event)
            cursor = result.cursor
            assert len(result.asset_events) == 1
            assert _manifest_keys(store, result.asset_events[0]) == sorted(batch)
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=RAW_ASSET_KEY, asset_partitions=["2026-02-01|L1"]), limit=10
        ).records
        assert len(records) == 2  # two ticks, two events on the partition
        latest = records[0].asset_materialization
        assert latest is not None
        prefix = latest.metadata["manifests_of_partition"].value
    found = [o["key"] for m in store.list(prefix) for o in read_manifest(store, m)["objects"]]
    assert sorted(found) == sorted(store.list(f"raw/line={LINE}/date=2026-02-01/"))
    assert len(found) == 81


def test_sensor_over_s3_with_pagination(moto_server: str, s3_bucket: str) -> None:
    """Thousands of keys in moto's S3 (several list pages) are recorded once each over a few ticks,
    each read with a ranged GET of its header."""
    resource = S3ObjectStoreResource(bucket=s3_bucket, endpoint_url=moto_server)
    store = resource.get_store()
    day0 = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    t0 = int(day0.timestamp()) * 10**9
    with ThreadPoolExecutor(max_workers=8) as pool:  # > 1000 keys: the listing spans several pages
        keys = list(pool.map(lambda k: put_small_object(store, LINE, t0 + k * 300 * 10**9), range(1100)))
    sensor = build_raw_objects_sensor(lines=[LINE], today=lambda: dt.date(2026, 4, 20), max_keys_per_tick=500)
    cursor = None
    recorded: list[str] = []
    for _ in range(4):
        result = sensor(build_sensor_context(cursor=cursor, resources={"object_store": resource}))
        recorded += [k for e in result.asset_events for k in _manifest_keys(store, e)]
        cursor = result.cursor
    assert sorted(recorded) == sorted(keys) and len(recorded) == len(keys)
    head, size = store.get_head(keys[0], 64)
    assert len(head) == 64 and size == len(store.get(keys[0]))


def test_sensor_records_gap_objects_on_the_gaps_asset(tmp_path: Path) -> None:
    from factory_assets.raw.assets import GAPS_ASSET_KEY
    from factory_core.layout import gap_key
    from factory_core.rawformat import GapRecord, encode_gaps

    store = LocalDirStore(tmp_path)
    t0 = int(dt.datetime(2026, 2, 1, 6, tzinfo=dt.UTC).timestamp()) * 10**9
    gaps = [GapRecord(LINE, 5, "temp_die", 100, 160, t0, t0 + 6 * 10**9, t0 + 10**10, "retention overrun")]
    key = gap_key(LINE, gaps)
    store.put(key, encode_gaps(LINE, gaps))
    sensor = build_raw_objects_sensor(lines=[LINE], today=lambda: dt.date(2026, 2, 1))
    ctx = build_sensor_context(resources={"object_store": LocalObjectStoreResource(root=str(tmp_path))})
    (event,) = _events(sensor(ctx))
    assert event.asset_key == GAPS_ASSET_KEY and event.partition == "2026-02-01|L1"
    assert event.metadata["lost_samples"].value == 60
    assert event.metadata["keys"].value == [key]
    (lost,) = read_manifest(store, event.metadata["manifest"].value)["objects"][0]["lost"]
    assert (lost["channel"], lost["from_seq"], lost["to_seq"]) == ("temp_die", 100, 160)
