"""Retrain on demand: when the AI's record check fails for the model that is serving, train the current quarter.

Why a sensor (not a hook, not only a documented job): the check runs inside the `model_performance` run,
and a failed check does not fail its run, so only something watching check executions sees it - the same
way the alerting sensor pages on it. The sensor requests one run of `quality_model_job` for the current
quarter (the quarterly partition holding today; end_offset=1 exposes it) whose run key is the quarter plus
the failing model version. So it cannot loop: a version found worse triggers one retrain per quarter; the
retrained version, if the gate promotes it, is judged on its own productions from then on (the check judges
the serving version only, see compute.py), and a failure of an older version that no longer serves
requests nothing. The promotion gate still decides whether the retrained model replaces the serving one.
Anyone can also launch `quality_model_job` for a quarter by hand (UI or `dagster job launch`).

On its first evaluation the cursor is set past the existing check history (no retrain storm on deploy).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from dagster import (
    AssetCheckKey,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecordStatus,
)

from factory_assets.model.partitions import quarter_start
from factory_assets.model.schedule import quality_model_job
from factory_assets.performance.assets import CHECK_NAME, MODEL_PERFORMANCE_KEY
from factory_assets.resources.object_store import ObjectStoreResource
from factory_core.machine import MODEL_CODE_BASE, set_by_label
from quality_model.registry import read_pointer

CHECK_KEY = AssetCheckKey(MODEL_PERFORMANCE_KEY, CHECK_NAME)
HISTORY_LIMIT = 200
TRIGGER_TAG = "factory/trigger"


def _metadata_value(metadata: dict[str, Any], name: str) -> str:
    value = metadata.get(name)
    return str(getattr(value, "value", value) or "")


def build_retrain_sensor(
    today: Callable[[], dt.date] | None = None, minimum_interval_seconds: int = 120
) -> SensorDefinition:
    """The retrain sensor; `today` can be pinned by tests (the quarter requested is the one holding it)."""

    def _today() -> dt.date:
        return today() if today else dt.datetime.now(dt.UTC).date()

    @sensor(
        name="retrain_on_model_performance",
        job=quality_model_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Requests a quality_model run for the current quarter when {CHECK_NAME} fails for the "
        "serving model (run key: quarter + failing version, so at most once per version and quarter).",
    )
    def retrain_on_model_performance(
        context: SensorEvaluationContext, object_store: ObjectStoreResource
    ) -> SensorResult | SkipReason:
        storage = context.instance.event_log_storage
        history = storage.get_asset_check_execution_history(CHECK_KEY, limit=HISTORY_LIMIT)
        done = [r for r in history if r.status in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES]
        seen = int(context.cursor) if context.cursor else None
        newest = max((r.id for r in done), default=seen or 0)
        if seen is None:
            context.update_cursor(str(newest))
            return SkipReason(f"initialised past {len(done)} existing evaluations of {CHECK_NAME}")
        failed = [
            r for r in done if r.id > seen and r.status == AssetCheckExecutionRecordStatus.FAILED and r.event
        ]
        if not failed:
            context.update_cursor(str(newest))
            return SkipReason(f"no new failure of {CHECK_NAME}")
        record = max(failed, key=lambda r: r.id)
        evaluation = record.event.asset_check_evaluation if record.event else None
        metadata = dict(evaluation.metadata) if evaluation else {}
        judged = _metadata_value(metadata, "judged_version")
        pointer = read_pointer(object_store.get_store())
        serving = set_by_label(MODEL_CODE_BASE + int(pointer["version_number"])) if pointer else ""
        if not judged or judged != serving:
            context.update_cursor(str(newest))
            return SkipReason(
                f"{CHECK_NAME} failed for {judged or 'no version'}, serving is {serving or 'none'}"
            )
        quarter = quarter_start(_today().isoformat())
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=f"retrain:{quarter}:{judged}",
                    partition_key=quarter,
                    tags={
                        TRIGGER_TAG: CHECK_NAME,
                        "factory/failed-version": judged,
                        "factory/failed-partition": _metadata_value(metadata, "partition"),
                        "factory/failed-check-run": record.run_id,
                    },
                )
            ],
            cursor=str(newest),
        )

    return retrain_on_model_performance
