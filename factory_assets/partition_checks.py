"""Asset checks judged per partition, in single runs, ranged runs and backfills alike.

What: `partition_check_spec` declares a check partitioned like the line-day assets; `report` records one
`AssetCheckEvaluation` per (check, partition) of the run, each pointing at that partition's
materialization of this run, and yields the check outputs Dagster requires of the step. The check's
*Partitions* tab in the UI (and GraphQL `partitionStatuses`, the alerting and retrain sensors through
`get_asset_check_execution_history`) then show which day failed, even when thirty days ran in one run.

Why not `AssetCheckResult`: in Dagster 1.13 it takes no partition and is stamped with the step's single
partition key, which a partition-range run does not have; yielded there, it lands as one unpartitioned
record while every planned partition ends SKIPPED. A partitioned spec makes the run plan one execution
row per partition of the range; a logged `AssetCheckEvaluation(partition=...)` completes exactly that
row. It must name the partition's materialization (`target_materialization_data`), otherwise the UI
treats the verdict as stale, so `report` runs after the asset's `MaterializeResult` has been stored.
Dagster 1.13 marks `AssetCheckSpec(partitions_def=...)` as preview; the warning is silenced here only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Output,
    PreviewWarning,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from factory_assets.raw.partitions import LINE_DAY_PARTITIONS


def partition_check_spec(name: str, asset: AssetKey, description: str) -> AssetCheckSpec:
    """A check judged per line-day partition (the asset's own partitions)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(name, asset=asset, description=description, partitions_def=LINE_DAY_PARTITIONS)


@dataclass(frozen=True)
class Verdict:
    """One check's verdict on one partition."""

    check_name: str
    partition: str
    passed: bool
    severity: AssetCheckSeverity
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None


def _target(
    context: AssetExecutionContext, asset_key: AssetKey, partition: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """This run's materialization of `partition` (None if a later run has materialized it since).

    From the instance's asset index, as Dagster does for a single-partition `AssetCheckResult`: on the
    run-sharded SQLite storage a run's own event ids are not the ids the UI compares with."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].run_id != context.run.run_id:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id, run_id=records[0].run_id, timestamp=records[0].timestamp
    )


def report(
    context: AssetExecutionContext, asset_key: AssetKey, verdicts: Iterable[Verdict]
) -> Iterator[Output[None]]:
    """Record every verdict on its partition; yield after the asset's `MaterializeResult` (``yield from``).

    Only the checks selected for this run are recorded."""
    selected = {key.name for key in context.selected_asset_check_keys if key.asset_key == asset_key}
    chosen = [v for v in verdicts if v.check_name in selected]
    targets = {pk: _target(context, asset_key, pk) for pk in dict.fromkeys(v.partition for v in chosen)}
    for v in chosen:
        context.log_event(
            AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=v.check_name,
                passed=v.passed,
                metadata={"partition": v.partition, **v.metadata},
                severity=v.severity,
                description=v.description,
                partition=v.partition,
                target_materialization_data=targets[v.partition],
            )
        )
    # Each selected check is an output of the step; Dagster fails a step that does not yield it.
    for name in sorted(selected):
        key = AssetCheckKey(asset_key, name)
        yield Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))
