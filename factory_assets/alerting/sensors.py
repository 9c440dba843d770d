"""Run-failure and asset-check-failure alert sensors (both post through `AlertNotifierResource`).

Why sensors and not hooks: a sensor sees every run of the code location, including runs that die
before a hook could fire (OOM, lost ECS task), and a failed asset check does not fail its run at all.
"""

from __future__ import annotations

from dagster import (
    AssetCheckSeverity,
    DagsterEvent,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from factory_assets.alerting import check_cursor
from factory_assets.alerting.resource import AlertNotifierResource
from factory_core.alerting import Severity

MAX_STEP_ERRORS = 5
MAX_PARTITIONS_NAMED = 20


@run_failure_sensor(
    name="alert_on_run_failure",
    description="Pages on-call (SNS / e-mail) when any run of this code location fails.",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def run_failure_alert_sensor(context: RunFailureSensorContext, alert_notifier: AlertNotifierResource) -> None:
    """One alert per failed run; the dedup key is the job, so a crash-looping schedule pages once per window."""
    run = context.dagster_run
    lines = [f"Run {run.run_id} of job {run.job_name} failed."]
    if context.failure_event.message:
        lines.append(f"Failure: {context.failure_event.message}")
    for event in context.get_step_failure_events()[:MAX_STEP_ERRORS]:
        lines.append(f"Step {event.step_key}: {_root_cause_line(event)}")
    if url := alert_notifier.run_url(run.run_id):
        lines.append(f"Details: {url}")
    partition = run.tags.get("dagster/partition")
    alert_notifier.notify(
        f"Dagster run failed: {run.job_name}",
        "\n".join(lines),
        severity=Severity.CRITICAL,
        dedup_key=f"dagster-run-failure:{run.job_name}",
        details={
            "run_id": run.run_id,
            "job": run.job_name,
            **({"partition": partition} if partition else {}),
        },
    )


def _check_severity(severity: AssetCheckSeverity) -> Severity:
    return Severity.CRITICAL if severity == AssetCheckSeverity.ERROR else Severity.WARNING


def _root_cause_line(event: DagsterEvent) -> str:
    """First line of the innermost error: the user's exception, not Dagster's wrapper."""
    error = event.step_failure_data.error if event.step_failure_data else None
    while error is not None and error.cause is not None:
        error = error.cause
    text = error.message.strip() if error and error.message else ""
    return text.splitlines()[0] if text else "no message"


def _alert_check_failure(notifier: AlertNotifierResource, failed: list[AssetCheckExecutionRecord]) -> None:
    """One alert for a check's new failures: the newest one's details, every failed partition named."""
    record = max(failed, key=lambda r: r.id)
    evaluation = record.event.asset_check_evaluation if record.event else None
    asset = record.key.asset_key.to_user_string()
    check = record.key.name
    severity = evaluation.severity if evaluation else AssetCheckSeverity.ERROR
    body = [f"Asset check {check} on {asset} failed ({severity.value})."]
    if len(failed) > 1:
        body.append(f"{len(failed)} failed evaluations since the last sensor tick.")
    partitions = sorted({r.partition for r in failed if r.partition})
    if partitions:  # partitioned checks: one evaluation per partition, a ranged run may fail several days
        shown = ", ".join(partitions[:MAX_PARTITIONS_NAMED])
        more = (
            f" and {len(partitions) - MAX_PARTITIONS_NAMED} more"
            if len(partitions) > MAX_PARTITIONS_NAMED
            else ""
        )
        body.append(f"Failed partitions: {shown}{more}.")
    if evaluation is not None:
        if evaluation.description:
            body.append(evaluation.description)
        body += [f"{k}: {getattr(v, 'value', v)}" for k, v in sorted(evaluation.metadata.items())][:10]
    if url := notifier.run_url(record.run_id):
        body.append(f"Details: {url}")
    notifier.notify(
        f"Asset check failed: {asset} {check}",
        "\n".join(body),
        severity=_check_severity(severity),
        dedup_key=f"dagster-check:{asset}:{check}",
        details={
            "asset": asset,
            "check": check,
            "run_id": record.run_id,
            **({"partition": record.partition} if record.partition else {}),
        },
    )


@sensor(
    name="alert_on_asset_check_failure",
    description="Alerts when an asset check evaluates to failed (ERROR checks page, WARN checks notify).",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def asset_check_failure_alert_sensor(
    context: SensorEvaluationContext, alert_notifier: AlertNotifierResource
) -> SkipReason:
    """Alert on every check execution that completed failed since the last evaluation.

    Uses the asset-check execution index (one query for all checks, then history only for checks that
    ran or have executions in flight), which works on run-sharded SQLite and on Postgres alike. The
    cursor ({check: handled-up-to id and the ids still in flight}, alerting/check_cursor.py) keeps
    PLANNED and in-progress executions until they complete, so a run that finishes after a later-planned
    one is not skipped. On the first evaluation the cursor is set to what exists, so deploying the sensor
    does not page for history; a check added later alerts from its first failure.
    """
    repo = context.repository_def
    if repo is None:
        return SkipReason("no repository: asset checks unknown")
    keys = sorted(repo.asset_graph.asset_check_keys, key=lambda k: k.to_user_string())
    storage = context.instance.event_log_storage
    cursors = check_cursor.parse_all(context.cursor, [k.to_user_string() for k in keys])
    if cursors is None:
        cursors = {k.to_user_string(): check_cursor.initial(storage, k) for k in keys}
        context.update_cursor(check_cursor.dump_all(cursors))
        return SkipReason(f"{len(keys)} checks watched, initialised past their history")
    latest = storage.get_latest_asset_check_execution_by_key(keys)
    alerted = 0
    for key in keys:
        name, rec = key.to_user_string(), latest.get(key)
        cursor = cursors.get(name, check_cursor.CheckCursor())
        if rec is None or (rec.id <= cursor.after and not cursor.pending):
            continue
        done, cursors[name] = check_cursor.newly_completed(storage, key, cursor)
        failed = [r for r in done if r.status == AssetCheckExecutionRecordStatus.FAILED]
        if failed:
            _alert_check_failure(alert_notifier, failed)
            alerted += 1
    context.update_cursor(check_cursor.dump_all(cursors))
    return SkipReason(f"{len(keys)} checks watched, {alerted} failed")
