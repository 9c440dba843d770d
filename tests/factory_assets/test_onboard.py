"""Onboarding existing history: `factory-onboard record` records every object in a few events per
partition, its cursor continues where it stopped, and the command documents itself."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

from dagster import AssetRecordsFilter, DagsterInstance, build_sensor_context

from factory_assets.onboard import RecordStats, partition_names, record_history
from factory_assets.raw.assets import RAW_ASSET_KEY
from factory_assets.raw.sensors import build_raw_objects_sensor
from factory_assets.resources import LocalObjectStoreResource
from factory_core.store import LocalDirStore
from tests.support.assets import DAY, LINE, NEXT_DAY


def test_record_history_records_every_object_with_one_event_per_partition_and_tick(
    local_store: LocalDirStore,
) -> None:
    resource = LocalObjectStoreResource(root=str(local_store.root))
    objects = len(list(local_store.list("raw/")))
    today = dt.date.fromisoformat(NEXT_DAY) + dt.timedelta(days=5)
    seen: list[int] = []
    with DagsterInstance.ephemeral() as instance:
        stats = record_history(
            instance, resource, [LINE], today, max_keys_per_tick=10, progress=lambda s: seen.append(s.objects)
        )
        assert isinstance(stats, RecordStats)
        assert stats.objects == objects == 48 and stats.quarantined == 0
        assert stats.ticks == 6  # 5 ticks of 10 keys, then one that finds nothing
        assert seen == sorted(seen) and seen[-1] == objects
        # 10 keys a tick over two days of 24 objects: one event per partition a tick touched.
        assert stats.events == 6
        for day in (DAY, NEXT_DAY):
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=RAW_ASSET_KEY, asset_partitions=[f"{day}|{LINE}"]), limit=100
            ).records
            assert sum(r.asset_materialization.metadata["objects"].value for r in records) == 24
        # The cursor it ends with is what the daemon's sensor continues from: nothing is recorded twice.
        sensor = build_raw_objects_sensor(lines=[LINE], today=lambda: today)
        ctx = build_sensor_context(
            instance=instance, cursor=stats.cursor, resources={"object_store": resource}
        )
        assert list(sensor(ctx).asset_events) == []


def test_backfill_targets_every_line_day_in_the_partition_key_form() -> None:
    names = partition_names(["L1", "L2"], dt.date(2026, 3, 1), dt.date(2026, 3, 3))
    assert names[:3] == ["2026-03-01|L1", "2026-03-02|L1", "2026-03-03|L1"] and len(names) == 6


def test_the_command_explains_both_steps() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "factory_assets.onboard", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "record" in out and "backfill" in out
    rec = subprocess.run(
        [sys.executable, "-m", "factory_assets.onboard", "record", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--workspace" in rec and "--keys-per-tick" in rec
