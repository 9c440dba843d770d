"""What the data team sees in the UI: column descriptions from one definition, freshness policies with
Dagster's current API on the raw and production assets, and code references."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, DagsterInstance, materialize
from dagster._core.definitions.freshness import TimeWindowFreshnessPolicy

from factory_assets.aggregates.assets import AGGREGATES_KEY
from factory_assets.aggregates.tables import DAILY_LINE_AGGREGATES, DAILY_SET_BY_BREAKDOWN
from factory_assets.definitions import ASSETS, defs
from factory_assets.dimensions.tables import CREW, LOTS
from factory_assets.production.completeness import PRODUCTIONS_KEY
from factory_assets.raw.assets import RAW_ASSET_KEY
from factory_assets.raw.partitions import line_day_key
from factory_assets.resources import LocalObjectStoreResource, WarehouseResource
from factory_core.store import LocalDirStore
from tests.support.assets import DAY, LINE


def test_every_column_of_both_tables_has_a_description_in_the_ui(
    local_store: LocalDirStore, tmp_path: Path
) -> None:
    resources = {
        "object_store": LocalObjectStoreResource(root=str(local_store.root)),
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/wh.db"),
    }
    instance = DagsterInstance.ephemeral()
    assert materialize(
        ASSETS, selection="production/productions*", partition_key=line_day_key(LINE, DAY),
        resources=resources, instance=instance,
    ).success  # fmt: skip
    for key, expected in ((PRODUCTIONS_KEY, None), (AGGREGATES_KEY, DAILY_LINE_AGGREGATES)):
        mat = instance.fetch_materializations(key, limit=1).records[0].asset_materialization
        assert mat is not None
        columns = mat.metadata["dagster/column_schema"].value.columns
        undescribed = [c.name for c in columns if not c.description]
        assert not undescribed, (key, undescribed)
        if expected is not None:  # the warehouse table's own column comments are the descriptions
            assert [c.description for c in columns] == [c.comment for c in expected.columns]
    assert all(c.comment for c in DAILY_SET_BY_BREAKDOWN.columns)
    assert all(c.comment for table in (CREW, LOTS) for c in table.columns)  # the dimensions too
    lots = mat.metadata["lots_schema"].value.columns
    assert [c.description for c in lots] == [c.comment for c in LOTS.columns]
    columns = {c.name: c.description for c in mat.metadata["dagster/column_schema"].value.columns}
    assert "over-temperature alarm" in next(
        v for k, v in _productions_columns(instance).items() if k.endswith("_s_above_limit")
    )
    assert columns["productions"] == "productions started that day"


def _productions_columns(instance: DagsterInstance) -> dict[str, str]:
    mat = instance.fetch_materializations(PRODUCTIONS_KEY, limit=1).records[0].asset_materialization
    assert mat is not None
    return {c.name: c.description for c in mat.metadata["dagster/column_schema"].value.columns}


def test_raw_and_production_assets_carry_time_window_freshness_policies() -> None:
    graph = defs.resolve_asset_graph()
    for key in (RAW_ASSET_KEY, PRODUCTIONS_KEY):
        policy = graph.get(key).freshness_policy
        assert isinstance(policy, TimeWindowFreshnessPolicy), key
        assert (
            policy.warn_window is not None
            and policy.warn_window.to_timedelta() < policy.fail_window.to_timedelta()
        )


def test_materialized_assets_link_to_their_source_code() -> None:
    graph = defs.resolve_asset_graph()
    for key in (PRODUCTIONS_KEY, AGGREGATES_KEY, AssetKey(["model", "quality_model"])):
        refs = graph.get(key).metadata["dagster/code_references"].code_references
        assert refs and refs[0].file_path.endswith(".py") and refs[0].line_number > 0, key
