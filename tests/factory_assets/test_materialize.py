"""materialize() on a real Dagster instance: S3 (moto over HTTP) + Postgres warehouse, the embedded
defaults (local directory + SQLite), idempotency, partition ranges and quarantine of a corrupt object."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, materialize

from factory_assets.aggregates.tables import DAILY_LINE_AGGREGATES, DAILY_SET_BY_BREAKDOWN
from factory_assets.definitions import ASSETS
from factory_assets.production.assets import productions
from factory_assets.raw.partitions import line_day_key
from factory_assets.resources import S3ObjectStoreResource, WarehouseResource, resources_from_env
from factory_core.layout import processed_key
from factory_core.store import LocalDirStore, ObjectStore
from tests.support.assets import DAY, LINE, NEXT_DAY, truth_for_day, write_history

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
SELECTION = "production/productions*"

# Shared fixtures (pytest finds fixtures by module attribute).


@pytest.fixture
def pg_warehouse() -> Iterator[WarehouseResource]:
    """A warehouse in a fresh Postgres schema, dropped afterwards."""
    schema = f"fa_{uuid.uuid4().hex[:10]}"
    yield WarehouseResource(url=PG_URL, db_schema=schema)
    eng = sa.create_engine(PG_URL)
    with eng.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    eng.dispose()


def _run(
    resources: dict[str, Any], partition: str, instance: DagsterInstance, selection: str = SELECTION
) -> Any:
    result = materialize(
        ASSETS, selection=selection, partition_key=partition, resources=resources, instance=instance
    )
    assert result.success
    return result


def _checks(result: Any) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _table(store: ObjectStore, date: str) -> bytes:
    return store.get(processed_key(LINE, date))


def test_s3_and_postgres_warehouse_idempotent(
    moto_server: str, s3_bucket: str, pg_warehouse: WarehouseResource
) -> None:
    write_history(f"s3://{s3_bucket}", DAY, 2, endpoint_url=moto_server)
    store_res = S3ObjectStoreResource(bucket=s3_bucket, endpoint_url=moto_server)
    resources = {"object_store": store_res, "warehouse": pg_warehouse}
    pk = line_day_key(LINE, DAY)
    instance = DagsterInstance.ephemeral()
    first = _run(resources, pk, instance)
    assert all(_checks(first).values()), _checks(first)
    store = store_res.get_store()
    data1 = _table(store, DAY)
    frame = pl.read_parquet(io.BytesIO(data1))
    assert frame["production_id"].to_list() == [p.production_id for p in truth_for_day(DAY)]
    rows1 = pg_warehouse.fetch(DAILY_LINE_AGGREGATES)
    parts1 = pg_warehouse.fetch(DAILY_SET_BY_BREAKDOWN)
    assert len(rows1) == 1 and rows1[0]["productions"] == frame.height
    assert sum(p["productions"] for p in parts1) == frame.height
    assert rows1[0]["quality_p10"] <= rows1[0]["quality_p50"] <= rows1[0]["quality_p90"]
    # Materialize again: byte-identical Parquet, identical warehouse rows (no duplicates).
    _run(resources, pk, instance)
    assert _table(store, DAY) == data1
    assert pg_warehouse.fetch(DAILY_LINE_AGGREGATES) == rows1
    assert pg_warehouse.fetch(DAILY_SET_BY_BREAKDOWN) == parts1
    mats = instance.fetch_materializations(productions.key, limit=10).records
    md = mats[0].asset_materialization.metadata
    assert md["dagster/row_count"].value == frame.height
    assert md["quality_plot"].value.startswith("![quality over the day](data:image/png;base64,")
    assert md["day_complete"].value is True


def test_embedded_defaults_local_dir_and_sqlite(
    history_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No settings: var/objects and sqlite:///var/warehouse.db relative to the working directory."""
    for var in ("FACTORY_STORE_URL", "FACTORY_WAREHOUSE_URL", "FACTORY_WAREHOUSE_SCHEMA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    import shutil

    shutil.copytree(history_dir, tmp_path / "var" / "objects")
    resources = resources_from_env()
    assert resources["object_store"].describe() == "local:var/objects"
    instance = DagsterInstance.ephemeral()
    _run(resources, line_day_key(LINE, DAY), instance)
    assert (tmp_path / "var" / "objects" / processed_key(LINE, DAY)).exists()
    rows = resources["warehouse"].fetch(DAILY_LINE_AGGREGATES)
    assert [(r["line"], str(r["date"])) for r in rows] == [(LINE, DAY)]
    assert (tmp_path / "var" / "warehouse.db").exists()


def test_partition_range_runs_in_one_run(local_store: LocalDirStore, tmp_path: Path) -> None:
    """A backfill chunk (partition range) is handled by one run: both days written."""
    resources = {
        "object_store": _local_res(local_store),
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/wh.db"),
    }
    instance = DagsterInstance.ephemeral()
    result = materialize(
        ASSETS,
        selection="production/productions",
        resources=resources,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": line_day_key(LINE, DAY),
            "dagster/asset_partition_range_end": line_day_key(LINE, NEXT_DAY),
        },
    )
    assert result.success
    mats = result.get_asset_materialization_events()
    assert sorted(e.materialization.partition for e in mats) == sorted(
        [line_day_key(LINE, DAY), line_day_key(LINE, NEXT_DAY)]
    )
    assert local_store.exists(processed_key(LINE, DAY)) and local_store.exists(processed_key(LINE, NEXT_DAY))


def _local_res(store: LocalDirStore) -> Any:
    from factory_assets.resources import LocalObjectStoreResource

    return LocalObjectStoreResource(root=str(store.root))


def test_corrupt_object_is_quarantined_and_does_not_block(local_store: LocalDirStore, tmp_path: Path) -> None:
    bad = sorted(local_store.list(f"raw/line={LINE}/date={DAY}/hour=07/"))[0]
    data = local_store.get(bad)
    local_store.put(bad, data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])  # one flipped byte
    resources = {
        "object_store": _local_res(local_store),
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/wh.db"),
    }
    instance = DagsterInstance.ephemeral()
    result = _run(resources, line_day_key(LINE, DAY), instance, selection="production/productions")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["raw_objects_valid"].passed
    assert bad in str(checks["raw_objects_valid"].metadata["quarantined"].value)
    assert not checks["productions_completeness"].passed  # the lost hour is not covered
    assert local_store.exists(f"quarantine/{bad}")
    assert b"reason" in local_store.get(f"quarantine/{bad}.reason.json")
    frame = pl.read_parquet(io.BytesIO(_table(local_store, DAY)))
    assert frame.height > 200  # the rest of the day is still there
    nxt = _run(resources, line_day_key(LINE, NEXT_DAY), instance, selection="production/productions")
    assert _checks(nxt)["raw_objects_valid"]
