"""Quarterly schedule of quality_model: at 00:00 UTC on the first day of each quarter (QUARTERLY_CRON),
train the quarter that just ended (the last complete partition at the tick's time)."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from factory_assets.model.assets import QUALITY_MODEL_KEY
from factory_assets.model.partitions import QUARTERLY_CRON, QUARTERLY_PARTITIONS

TRAIN_TAG_KEY, TRAIN_TAG_VALUE = "factory/job-kind", "train"

quality_model_job = define_asset_job(
    "quality_model_job",
    selection=AssetSelection.assets(QUALITY_MODEL_KEY),
    description="Train, evaluate, publish and register the quality model of one quarter (with its checks).",
    # the instance's run queue lets one run with this tag at a time (deploy/dagster/dagster.yaml)
    tags={TRAIN_TAG_KEY: TRAIN_TAG_VALUE},
)


@schedule(
    name="quality_model_quarterly",
    cron_schedule=QUARTERLY_CRON,
    execution_timezone="UTC",
    job=quality_model_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Quarterly retraining of the quality model on the quarter that just ended.",
)
def quality_model_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    now = context.scheduled_execution_time
    ended = [
        key
        for key in QUARTERLY_PARTITIONS.get_partition_keys(current_time=now)
        if now is None or QUARTERLY_PARTITIONS.time_window_for_partition_key(key).end <= now
    ]
    if not ended:
        return SkipReason("no quarter has ended since the partitions' start")
    quarter = ended[-1]
    # run_key = the quarter: a re-evaluated tick never launches the same quarter twice.
    return RunRequest(run_key=f"quality_model:{quarter}", partition_key=quarter)
