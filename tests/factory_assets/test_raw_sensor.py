"""The raw-objects sensor: incremental listing with a durable cursor over thousands of keys, late objects,
events with metadata per object, and quarantine of corrupt objects."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dagster import AssetMaterialization, AssetObservation, build_sensor_context

from factory_assets.raw.assets import RAW_ASSET_KEY
from factory_assets.raw.scan import LineCursor, scan_line
from factory_assets.raw.sensors import build_raw_objects_sensor, dump_cursor, load_cursor
from factory_assets.resources import LocalObjectStoreResource, S3ObjectStoreResource
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


def test_sensor_records_each_object_on_its_partition_and_quarantines_corrupt(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    day0 = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    t0 = int(day0.timestamp()) * 10**9
    good = [put_small_object(store, LINE, t0 + k * 3_600 * 10**9) for k in range(30)]  # spans two days
    corrupt_key = good[3]
    store.put(corrupt_key, store.get(corrupt_key)[:-7])  # truncated
    sensor = build_raw_objects_sensor(lines=[LINE], today=lambda: dt.date(2026, 2, 2))
    resource = LocalObjectStoreResource(root=str(tmp_path))
    ctx = build_sensor_context(cursor=None, resources={"object_store": resource})
    result = sensor(ctx)
    events = _events(result)
    mats = [e for e in events if isinstance(e, AssetMaterialization)]
    obs = [e for e in events if isinstance(e, AssetObservation)]
    assert len(mats) == 29 and len(obs) == 1
    assert {m.partition for m in mats} == {"2026-02-01|L1", "2026-02-02|L1"}
    m = mats[0]
    assert m.asset_key == RAW_ASSET_KEY
    assert m.metadata["channels"].value == 1
    assert m.metadata["samples"].value == 10
    assert (
        m.metadata["sequence_ranges"].value["production_id"][1]
        - m.metadata["sequence_ranges"].value["production_id"][0]
        == 10
    )
    assert corrupt_key in obs[0].description and "truncated" in obs[0].description
    assert store.exists(f"quarantine/{corrupt_key}")
    reason = json.loads(store.get(f"quarantine/{corrupt_key}.reason.json"))
    assert reason["key"] == corrupt_key and reason["reason"]
    # Same cursor, nothing new: no events. One more object: exactly one event.
    ctx2 = build_sensor_context(cursor=result.cursor, resources={"object_store": resource})
    assert _events(sensor(ctx2)) == []
    late = put_small_object(store, LINE, t0 + 86_400 * 10**9 + 1_800 * 10**9, group="late")
    ctx3 = build_sensor_context(cursor=result.cursor, resources={"object_store": resource})
    events3 = _events(sensor(ctx3))
    assert [e.metadata["key"].value for e in events3] == [late]
    assert load_cursor(dump_cursor(load_cursor(result.cursor))).keys() == {"raw", "gaps"}


def test_sensor_over_s3_with_pagination(moto_server: str, s3_bucket: str) -> None:
    """Thousands of keys in moto's S3 (several list pages) are recorded once each over a few ticks."""
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
        recorded += [e.metadata["key"].value for e in result.asset_events]
        cursor = result.cursor
    assert sorted(recorded) == sorted(keys) and len(recorded) == len(keys)


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
    assert event.metadata["key"].value == key
