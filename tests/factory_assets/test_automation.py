"""Declarative automation, evaluated with evaluate_automation_conditions on a real instance:
raw objects landing refresh exactly the production partitions they touch; aggregates only for complete days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from dagster import (
    AssetSelection,
    DagsterInstance,
    Definitions,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)

from factory_assets.aggregates.assets import AGGREGATES_KEY
from factory_assets.definitions import ASSETS
from factory_assets.production.assets import PRODUCTIONS_KEY
from factory_assets.production.compute import build_day
from factory_assets.raw.partitions import line_day_key
from factory_assets.raw.sensors import build_raw_objects_sensor
from factory_assets.resources import LocalObjectStoreResource, WarehouseResource
from factory_core.store import LocalDirStore
from tests.support.assets import DAY, LINE, NEXT_DAY, put_small_object

PREV_DAY = "2026-03-01"
EVAL_TIME = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)

# Shared fixtures (pytest finds fixtures by module attribute).


def _resources(store: LocalDirStore, tmp_path: Path) -> dict[str, Any]:
    return {
        "object_store": LocalObjectStoreResource(root=str(store.root)),
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/wh.db"),
    }


def _record_new_objects(
    instance: DagsterInstance, resources: dict[str, Any], cursor: str | None
) -> str | None:
    """Run one raw-sensor tick and store its events, as the daemon would."""
    sensor = build_raw_objects_sensor(lines=[LINE], today=lambda: EVAL_TIME.date())
    result = sensor(build_sensor_context(cursor=cursor, resources=resources, instance=instance))
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result.cursor


def test_raw_objects_trigger_touched_partitions_and_aggregates_wait_for_complete_days(
    local_store: LocalDirStore, tmp_path: Path
) -> None:
    instance = DagsterInstance.ephemeral()
    resources = _resources(local_store, tmp_path)
    defs = Definitions(assets=ASSETS, resources=resources)
    sel = AssetSelection.assets(PRODUCTIONS_KEY, AGGREGATES_KEY)
    first = evaluate_automation_conditions(defs, instance, asset_selection=sel, evaluation_time=EVAL_TIME)
    assert first.total_requested == 0  # nothing landed yet: no storm over 36,500 missing partitions
    cursor = _record_new_objects(instance, resources, None)
    res = evaluate_automation_conditions(
        defs, instance, asset_selection=sel, evaluation_time=EVAL_TIME, cursor=first.cursor
    )
    # Objects of DAY and NEXT_DAY touch the tables of the day before, the days themselves and the day after.
    expected = {line_day_key(LINE, d) for d in (PREV_DAY, DAY, NEXT_DAY, "2026-03-04")}
    assert res.get_requested_partitions(PRODUCTIONS_KEY) == expected
    assert res.get_num_requested(AGGREGATES_KEY) == 0

    # Materialize the production tables: DAY is complete; NEXT_DAY is covered to midnight but its last
    # production (or that production's QA) ends after midnight, in a day without objects: not complete.
    next_day = build_day(local_store, LINE, NEXT_DAY)
    assert (
        next_day.covered and (next_day.running_at_midnight or next_day.qa_pending) and not next_day.complete
    )
    for d in (DAY, NEXT_DAY):
        assert materialize(
            ASSETS, selection="production/productions", partition_key=line_day_key(LINE, d),
            resources=resources, instance=instance,
        ).success  # fmt: skip
    res2 = evaluate_automation_conditions(
        defs, instance, asset_selection=sel, evaluation_time=EVAL_TIME, cursor=res.cursor
    )
    assert res2.get_requested_partitions(AGGREGATES_KEY) == {line_day_key(LINE, DAY)}
    assert line_day_key(LINE, DAY) not in res2.get_requested_partitions(PRODUCTIONS_KEY)

    # A late object inside NEXT_DAY (10:07): only the tables that read its data refresh - NEXT_DAY, and
    # 2026-03-04, never materialized, which reads NEXT_DAY's last hour - not DAY, which reads only
    # NEXT_DAY's first hour (as every intraday object of today must not re-run yesterday's table too).
    t = int(dt.datetime(2026, 3, 3, 10, 7, tzinfo=dt.UTC).timestamp()) * 10**9
    put_small_object(local_store, LINE, t, group="late")
    cursor = _record_new_objects(instance, resources, cursor)
    res3 = evaluate_automation_conditions(
        defs, instance, asset_selection=sel, evaluation_time=EVAL_TIME, cursor=res2.cursor
    )
    assert res3.get_requested_partitions(PRODUCTIONS_KEY) == {
        line_day_key(LINE, d) for d in (NEXT_DAY, "2026-03-04")
    }
    # One inside NEXT_DAY's first hour (00:20), which DAY's table reads: DAY refreshes too.
    t = int(dt.datetime(2026, 3, 3, 0, 20, tzinfo=dt.UTC).timestamp()) * 10**9
    put_small_object(local_store, LINE, t, group="early")
    _record_new_objects(instance, resources, cursor)
    res4 = evaluate_automation_conditions(
        defs, instance, asset_selection=sel, evaluation_time=EVAL_TIME, cursor=res3.cursor
    )
    assert line_day_key(LINE, DAY) in res4.get_requested_partitions(PRODUCTIONS_KEY)
