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

The same sensor watches `model_performance_own_refusals` (performance/refusals.py): when the serving
version refused more lots of its own accord over the refusal window than the rule tolerates, its lots
have moved beyond its history; the refused lots have been run since, so a retrain on the history so far
covers them. Its run key is the failing version plus the failing day, and a request is made only if no
refusal retrain was requested for that version within the window (`refusals.should_request`, the rule the
backtest measures), found from the runs' tags.

On its first evaluation the cursor is set past the existing check history (no retrain storm on deploy).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any

from dagster import (
    AssetCheckKey,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus,
)

from factory_assets.alerting import check_cursor
from factory_assets.model.partitions import quarter_start
from factory_assets.model.schedule import quality_model_job
from factory_assets.performance import refusals
from factory_assets.performance.assets import CHECK_NAME, MODEL_PERFORMANCE_KEY, REFUSALS_CHECK_NAME
from factory_assets.resources.object_store import ObjectStoreResource
from factory_core.machine import MODEL_CODE_BASE, set_by_label
from quality_model.registry import read_pointer

CHECK_KEYS = {name: AssetCheckKey(MODEL_PERFORMANCE_KEY, name) for name in (CHECK_NAME, REFUSALS_CHECK_NAME)}
TRIGGER_TAG = "factory/trigger"
FAILED_VERSION_TAG = "factory/failed-version"
FAILED_PARTITION_TAG = "factory/failed-partition"
# the rule the sensor applies between requests; the check's own thresholds are its asset config
REFUSAL_RULE = refusals.RefusalRule()


def _metadata_value(metadata: dict[str, Any], name: str) -> str:
    value = metadata.get(name)
    return str(getattr(value, "value", value) or "")


def _failed_since(
    context: SensorEvaluationContext, key: AssetCheckKey, cursor: check_cursor.CheckCursor
) -> tuple[list[Any], check_cursor.CheckCursor]:
    """Failures of `key` completed since `cursor` (in-flight executions stay pending: check_cursor.py)."""
    done, after = check_cursor.newly_completed(context.instance.event_log_storage, key, cursor)
    return [r for r in done if r.status == AssetCheckExecutionRecordStatus.FAILED and r.event], after


def _failure_metadata(record: Any) -> dict[str, Any]:
    evaluation = record.event.asset_check_evaluation if record.event else None
    return dict(evaluation.metadata) if evaluation else {}


def _judged(record: Any) -> str:
    return _metadata_value(_failure_metadata(record), "judged_version")


def _refusal_days_requested(context: SensorEvaluationContext, version: str) -> list[dt.date]:
    """Days on which a refusal retrain was already requested for `version` (from the runs' tags)."""
    runs = context.instance.get_runs(
        filters=RunsFilter(tags={TRIGGER_TAG: REFUSALS_CHECK_NAME, FAILED_VERSION_TAG: version})
    )
    days = []
    for run in runs:
        partition = run.tags.get(FAILED_PARTITION_TAG, "")
        with contextlib.suppress(ValueError):
            days.append(dt.date.fromisoformat(partition.split("|")[0]))
    return days


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
        "serving model (run key: quarter + failing version, so at most once per version and quarter), or "
        f"when {REFUSALS_CHECK_NAME} fails for it (at most once per version per refusal window).",
    )
    def retrain_on_model_performance(
        context: SensorEvaluationContext, object_store: ObjectStoreResource
    ) -> SensorResult | SkipReason:
        storage = context.instance.event_log_storage
        cursor = check_cursor.parse_all(context.cursor, list(CHECK_KEYS))
        if cursor is None:
            cursor = {name: check_cursor.initial(storage, key) for name, key in CHECK_KEYS.items()}
            context.update_cursor(check_cursor.dump_all(cursor))
            return SkipReason(f"initialised past the existing evaluations of {', '.join(CHECK_KEYS)}")
        pointer = read_pointer(object_store.get_store())
        serving = set_by_label(MODEL_CODE_BASE + int(pointer["version_number"])) if pointer else ""
        quarter = quarter_start(_today().isoformat())
        requests: list[RunRequest] = []
        skipped: list[str] = []
        for name, key in CHECK_KEYS.items():
            failed, cursor[name] = _failed_since(context, key, cursor.get(name, check_cursor.CheckCursor()))
            if not failed:
                skipped.append(f"no new failure of {name}")
                continue
            # Judged per partition: a ranged run's days are records in no particular id order, so the
            # serving version's failure among them counts, not whichever record has the largest id.
            record = max(failed, key=lambda r: (_judged(r) == serving, r.id))
            metadata = _failure_metadata(record)
            judged = _metadata_value(metadata, "judged_version")
            partition = _metadata_value(metadata, "partition")
            if not judged or judged != serving:
                skipped.append(f"{name} failed for {judged or 'no version'}, serving is {serving or 'none'}")
                continue
            tags = {TRIGGER_TAG: name, FAILED_VERSION_TAG: judged, FAILED_PARTITION_TAG: partition,
                    "factory/failed-check-run": record.run_id}  # fmt: skip
            if name == CHECK_NAME:
                requests.append(
                    RunRequest(run_key=f"retrain:{quarter}:{judged}", partition_key=quarter, tags=tags)
                )
                continue
            day = dt.date.fromisoformat(partition.split("|")[0])
            if not refusals.should_request(day, _refusal_days_requested(context, judged), REFUSAL_RULE):
                skipped.append(f"{name}: a refusal retrain of {judged} was requested within the window")
                continue
            requests.append(
                RunRequest(run_key=f"refusals:{judged}:{partition}", partition_key=quarter, tags=tags)
            )
        if not requests:
            context.update_cursor(check_cursor.dump_all(cursor))
            return SkipReason("; ".join(skipped))
        return SensorResult(run_requests=requests, cursor=check_cursor.dump_all(cursor))

    return retrain_on_model_performance
