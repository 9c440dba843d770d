"""Truth per partition: a ranged run (one backfill chunk) records each partition's own figures and each
partition's own check verdicts (a failing and a passing day of the same run apart, as the check's
Partitions tab shows them), and the daily aggregates refuse an incomplete day whoever launches them (the
model's window never counts it)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import polars as pl
from dagster import AssetCheckKey, AssetKey, DagsterInstance, instance_for_test, materialize

from factory_assets.aggregates.assets import AGGREGATES_KEY
from factory_assets.aggregates.tables import DAILY_LINE_AGGREGATES
from factory_assets.definitions import ASSETS
from factory_assets.model.data import load_training_set
from factory_assets.production.checks import RULES
from factory_assets.production.completeness import PRODUCTIONS_KEY, reported_day
from factory_assets.raw.partitions import LINE_DAY_PARTITIONS, line_day_key
from factory_assets.resources import LocalObjectStoreResource, WarehouseResource
from factory_core.layout import processed_key
from factory_core.store import LocalDirStore
from tests.support.assets import DAY, LINE, NEXT_DAY

RANGE = {
    "dagster/asset_partition_range_start": line_day_key(LINE, DAY),
    "dagster/asset_partition_range_end": line_day_key(LINE, NEXT_DAY),
}


def _resources(store: LocalDirStore, tmp_path: Path) -> dict[str, Any]:
    return {
        "object_store": LocalObjectStoreResource(root=str(store.root)),
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/wh.db"),
    }


def _latest(instance: DagsterInstance, key: AssetKey, partition: str) -> dict[str, Any]:
    from dagster import AssetRecordsFilter

    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    assert records, f"no materialization of {key.to_user_string()} {partition}"
    mat = records[0].asset_materialization
    assert mat is not None
    return {k: v.value for k, v in mat.metadata.items()}


def _rows(store: LocalDirStore, date: str) -> int:
    return pl.read_parquet(io.BytesIO(store.get(processed_key(LINE, date)))).height


def test_a_ranged_run_records_each_partitions_own_row_count_preview_plot_and_checks(
    local_store: LocalDirStore, tmp_path: Path
) -> None:
    instance = DagsterInstance.ephemeral()
    result = materialize(
        ASSETS, selection="production/productions", resources=_resources(local_store, tmp_path),
        instance=instance, tags=RANGE,
    )  # fmt: skip
    assert result.success
    for date in (DAY, NEXT_DAY):
        md = _latest(instance, PRODUCTIONS_KEY, str(line_day_key(LINE, date)))
        assert md["dagster/row_count"] == _rows(local_store, date), date
        assert md["path"] == processed_key(LINE, date)
        assert md["preview"].startswith("| production_id")
        assert md["quality_plot"].startswith("![quality over the day](data:image/png;base64,")
        assert {f"check/{name}" for name in RULES} <= set(md)
    first = _latest(instance, PRODUCTIONS_KEY, str(line_day_key(LINE, DAY)))
    last = _latest(instance, PRODUCTIONS_KEY, str(line_day_key(LINE, NEXT_DAY)))
    # DAY is read with NEXT_DAY's first hour: complete. NEXT_DAY has no following hour: not complete.
    assert first["day_complete"] is True and first["check/productions_completeness"] is True
    assert last["day_complete"] is False and last["check/productions_completeness"] is False
    assert first["sha256"] != last["sha256"]


def _check_records(instance: DagsterInstance, key: AssetKey, check: str) -> dict[str | None, list[Any]]:
    """Every execution record of a check, by partition (None: an unpartitioned record)."""
    out: dict[str | None, list[Any]] = {}
    history = instance.event_log_storage.get_asset_check_execution_history(AssetCheckKey(key, check), 100)
    for record in history:
        out.setdefault(record.partition, []).append(record)
    return out


def _partition_statuses(instance: DagsterInstance, key: AssetKey, check: str) -> dict[str, set[str]]:
    """The check's status per partition as the UI's Partitions tab (GraphQL partitionStatuses) reads it."""
    check_key = AssetCheckKey(key, check)
    state = instance.event_log_storage.get_asset_check_state([(check_key, LINE_DAY_PARTITIONS)])[check_key]
    return {
        status.value: {str(pk) for pk in subset.subset_value.get_partition_keys()}
        for status, subset in state.subsets.items()
        if not subset.is_empty
    }


def test_a_ranged_run_judges_each_check_per_partition_a_failing_and_a_passing_day_apart(
    local_store: LocalDirStore, tmp_path: Path
) -> None:
    """NEXT_DAY: a corrupt object (raw_objects_valid, ERROR) and no following hour (completeness, WARN);
    DAY passes both, in the same run. Each day's verdict is its own record, current for its own event.
    On the on-disk instance `dagster dev` uses (SQLite, one database per run plus the asset index)."""
    corrupt = sorted(local_store.list(f"raw/line={LINE}/date={NEXT_DAY}/hour=07/"))[0]
    data = local_store.get(corrupt)
    local_store.put(corrupt, data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    with instance_for_test() as instance:
        _judge_per_partition(instance, local_store, tmp_path, corrupt)


def _judge_per_partition(
    instance: DagsterInstance, local_store: LocalDirStore, tmp_path: Path, corrupt: str
) -> None:
    resources = _resources(local_store, tmp_path)
    result = materialize(
        ASSETS, selection="production/productions", resources=resources, instance=instance, tags=RANGE
    )
    assert result.success
    day, next_day = str(line_day_key(LINE, DAY)), str(line_day_key(LINE, NEXT_DAY))
    for check in RULES:
        records = _check_records(instance, PRODUCTIONS_KEY, check)
        assert set(records) == {day, next_day}, check  # one record per partition, none for the run
        assert all(len(r) == 1 for r in records.values()), check
    passed = {"SUCCEEDED": {day, next_day}}
    for check in ("productions_schema", "productions_unique_ids"):
        assert _partition_statuses(instance, PRODUCTIONS_KEY, check) == passed, check
    split = {"SUCCEEDED": {day}, "FAILED": {next_day}}
    assert _partition_statuses(instance, PRODUCTIONS_KEY, "raw_objects_valid") == split
    assert _partition_statuses(instance, PRODUCTIONS_KEY, "productions_completeness") == split
    # Each evaluation carries its own partition's findings and severity.
    (bad,) = _check_records(instance, PRODUCTIONS_KEY, "raw_objects_valid")[next_day]
    evaluation = bad.event.asset_check_evaluation
    assert evaluation.partition == next_day and evaluation.severity.value == "ERROR"
    assert corrupt in str(evaluation.metadata["quarantined"].value)
    assert evaluation.metadata["partition"].value == next_day
    (good,) = _check_records(instance, PRODUCTIONS_KEY, "raw_objects_valid")[day]
    assert good.event.asset_check_evaluation.metadata["quarantined"].value == []
    # A single-partition run of the aggregates (DAY is complete) is judged on that partition too.
    assert materialize(
        ASSETS, selection="aggregates/daily_line_aggregates", partition_key=day, resources=resources,
        instance=instance,
    ).success  # fmt: skip
    for check in ("aggregates_match_productions", "aggregates_quality_range"):
        assert _partition_statuses(instance, AGGREGATES_KEY, check) == {"SUCCEEDED": {day}}, check


def _drop_hour(store: LocalDirStore, date: str, hour: str) -> list[str]:
    keys = sorted(store.list(f"raw/line={LINE}/date={date}/hour={hour}/"))
    assert keys
    for key in keys:
        (store.root / key).unlink()
    return keys


def test_aggregates_refuse_an_incomplete_day_naming_it_and_what_is_missing(
    local_store: LocalDirStore, tmp_path: Path
) -> None:
    _drop_hour(local_store, DAY, "07")  # an hour lost, no gap recorded: DAY is not complete
    resources = _resources(local_store, tmp_path)
    instance = DagsterInstance.ephemeral()
    pk = line_day_key(LINE, DAY)
    assert materialize(
        ASSETS, selection="production/productions", partition_key=pk, resources=resources, instance=instance
    ).success
    report = reported_day(instance, str(pk))
    assert not report.complete and report.missing_seconds
    # Launched by hand (the UI, a backfill, the CLI): the asset itself refuses, before writing anything.
    result = materialize(
        ASSETS, selection="aggregates/daily_line_aggregates", partition_key=pk, resources=resources,
        instance=instance, raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.user_failure_data.description)
    assert str(pk) in message and "not covered to midnight" in message
    assert "incomplete" in message
    assert resources["warehouse"].fetch(DAILY_LINE_AGGREGATES) == []
    assert not instance.fetch_materializations(AGGREGATES_KEY, limit=1).records


def test_aggregates_of_a_never_materialized_day_are_refused(
    local_store: LocalDirStore, tmp_path: Path
) -> None:
    result = materialize(
        ASSETS, selection="aggregates/daily_line_aggregates", partition_key=line_day_key(LINE, DAY),
        resources=_resources(local_store, tmp_path), instance=DagsterInstance.ephemeral(), raise_on_error=False,
    )  # fmt: skip
    assert not result.success


def test_the_model_window_leaves_out_a_day_its_production_table_reports_incomplete(
    local_store: LocalDirStore, tmp_path: Path
) -> None:
    """An aggregates row written before the asset refused half days must not make the day count."""
    resources = _resources(local_store, tmp_path)
    instance = DagsterInstance.ephemeral()
    pk = line_day_key(LINE, DAY)
    assert materialize(
        ASSETS, selection="production/productions*", partition_key=pk, resources=resources, instance=instance
    ).success
    rows = resources["warehouse"].fetch(DAILY_LINE_AGGREGATES)
    assert len(rows) == 1
    store = local_store
    start, end = dt.date.fromisoformat(DAY), dt.date.fromisoformat(NEXT_DAY)

    def incomplete(days: list[tuple[str, dt.date]]) -> dict[tuple[str, dt.date], str]:
        reports = {d: reported_day(instance, str(line_day_key(d[0], d[1].isoformat()))) for d in days}
        return {d: r.what_is_missing() for d, r in reports.items() if not r.complete}

    assert load_training_set(store, rows, start, end, incomplete).used_days == [(LINE, start)]
    # The day's table is re-materialized without an hour: the old aggregates row no longer counts.
    _drop_hour(local_store, DAY, "07")
    assert materialize(
        ASSETS, selection="production/productions", partition_key=pk, resources=resources, instance=instance
    ).success
    training = load_training_set(store, rows, start, end, incomplete)
    assert training.used_days == []
    assert training.days[0]["reason"].startswith("day incomplete: data not covered to midnight")
