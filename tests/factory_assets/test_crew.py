"""The crew dimension: the factory's roster reaches the warehouse's `crew` table, and again when edited."""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context, materialize

from factory_assets.definitions import ASSETS
from factory_assets.dimensions.sensors import crew_roster_sensor
from factory_assets.dimensions.tables import CREW
from factory_assets.resources import LocalObjectStoreResource, WarehouseResource
from factory_core.crew import CrewMember, encode_roster
from factory_core.layout import CREW_KEY
from factory_core.store import LocalDirStore
from factory_sim.roster import crew_roster, write_roster


def _tick(store: LocalDirStore, cursor: str | None) -> tuple[list[RunRequest], str | None]:
    resources = {"object_store": LocalObjectStoreResource(root=str(store.root))}
    with build_sensor_context(cursor=cursor, resources=resources) as ctx:
        result = crew_roster_sensor(ctx)
    if isinstance(result, SkipReason):
        return [], cursor
    return list(result.run_requests or []), result.cursor


def test_the_roster_sensor_requests_one_load_per_version_of_the_roster(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path / "objects")
    assert _tick(store, None) == ([], None)  # no roster yet: nothing to load
    write_roster(store)
    requests, cursor = _tick(store, None)
    assert len(requests) == 1 and requests[0].run_key and cursor
    assert _tick(store, cursor) == ([], cursor)  # unchanged: no new run
    store.put(CREW_KEY, encode_roster([*crew_roster(), CrewMember(6, "fatima", "novice")]))
    again, new_cursor = _tick(store, cursor)
    assert len(again) == 1 and again[0].run_key != requests[0].run_key and new_cursor != cursor


def test_loading_the_roster_replaces_the_crew_table_idempotently(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path / "objects")
    write_roster(store)
    warehouse = WarehouseResource(url=f"sqlite:///{tmp_path}/wh.db")
    resources = {"object_store": LocalObjectStoreResource(root=str(store.root)), "warehouse": warehouse}
    instance = DagsterInstance.ephemeral()
    for _ in range(2):
        assert materialize(ASSETS, selection="master/crew", resources=resources, instance=instance).success
    rows = warehouse.fetch(CREW)
    assert [(r["code"], r["set_by"], r["name"]) for r in rows][:2] == [(1, "craftsman:01", "anna"),
                                                                       (2, "craftsman:02", "bruno")]  # fmt: skip
    assert len(rows) == len(crew_roster())
    # A craftsman leaves the roster: the table follows (replaced, not appended to).
    store.put(CREW_KEY, encode_roster(crew_roster()[:3]))
    assert materialize(ASSETS, selection="master/crew", resources=resources, instance=instance).success
    assert [r["name"] for r in warehouse.fetch(CREW)] == ["anna", "bruno", "carla"]
