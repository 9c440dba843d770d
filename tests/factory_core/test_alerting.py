"""Alert delivery over real HTTP: moto's SNS publishes to a subscribed moto SQS queue we read back.

Covers the collector's notifier (gap / backlog alerts, rate limit, failures never raise) and the Dagster
sensors (run failure on a real instance with a failing job, failed asset check, raw freshness from keys
in moto's S3).
"""

from __future__ import annotations

import email
import json
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    EventLogEntry,
    SkipReason,
    asset,
    asset_check,
    build_run_status_sensor_context,
    build_sensor_context,
    job,
    materialize,
    op,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned

from edge_collector.alerts import notify_backlog, notify_gap
from factory_assets.alerting import (
    AlertNotifierResource,
    alerting_resources,
    alerting_sensors,
    asset_check_failure_alert_sensor,
    check_cursor,
    line_freshness,
    raw_freshness_alert_sensor,
    run_failure_alert_sensor,
)
from factory_assets.alerting.resource import _cached_notifier
from factory_assets.resources.object_store import S3ObjectStoreResource
from factory_core.alerting import (
    Alert,
    AlertSettings,
    Notifier,
    SesSink,
    Severity,
    SnsSink,
    build_alert,
    notifier_from_env,
)
from factory_core.layout import batch_key
from factory_core.rawformat import ChannelBlock, GapRecord, RawBatch, encode_batch
from tests.support.aws import REGION, Topic, aws_client, closed_port

ORIGIN = 1767225600 * 10**9  # 2026-01-01T00:00:00Z


@pytest.fixture(autouse=True)
def _fresh_notifier_cache() -> Iterator[None]:
    """Rate-limit state lives in a per-process cache; tests must not see each other's quiet windows."""
    _cached_notifier.cache_clear()
    yield
    _cached_notifier.cache_clear()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _attr(msg: dict[str, Any], name: str) -> str:
    return msg["MessageAttributes"][name]["Value"]


# ------------------------------------------------------------------------------------ notifier core


def test_build_alert_normalises_subject_and_validates() -> None:
    alert = build_alert("Gap on línea L1\nchannel x" + "y" * 200, "body", severity="critical", dedup_key="k")
    assert alert.severity is Severity.CRITICAL
    subject = alert.sns_subject
    assert len(subject) <= 100 and subject.isascii() and "\n" not in subject
    assert subject.startswith("[CRITICAL] Gap on l nea L1 channel x")
    assert build_alert("same", "").dedup_key == "same"
    with pytest.raises(ValueError, match="severity"):
        build_alert("s", "", severity="loud")
    with pytest.raises(ValueError, match="subject"):
        build_alert("  ", "")


def test_collector_gap_and_backlog_alerts_reach_sns_subscriber(topic: Topic) -> None:
    env = {
        "EDGE_ALERT_SNS_TOPIC_ARN": topic.arn,
        "EDGE_ALERT_SNS_ENDPOINT_URL": topic.endpoint,
        "EDGE_ALERT_REGION": REGION,
        "EDGE_ALERT_MIN_INTERVAL_S": "600",
    }
    notifier = notifier_from_env(env, source="edge-collector@test")
    gap = GapRecord(
        line="L1",
        channel_id=2,
        channel_name="temp_zone1",
        lost_from_seq=1000,
        lost_to_seq=1120,
        lost_from_ns=ORIGIN + 100 * 10**9,
        lost_to_ns=ORIGIN + 112 * 10**9,
        detected_at_ns=ORIGIN + 800 * 10**9,
        reason="retention",
    )
    assert notify_gap(notifier, gap)
    assert notify_backlog(
        notifier, "L1", 1800, 900, backlog_files=12, backlog_bytes=3_000_000, critical_after_s=1800
    )
    msgs = sorted(topic.messages(expected=2), key=lambda m: m["Subject"])
    assert [m["Subject"] for m in msgs] == [
        "[CRITICAL] Upload backlog on line L1 is 30 min old",
        "[WARNING] Gap on line L1: temp_zone1 lost 120 samples",
    ]
    backlog, gap_msg = msgs
    assert gap_msg["TopicArn"] == topic.arn
    assert "Samples [1000, 1120) of temp_zone1 (channel 2) from 2026-01-01T00:01:40Z" in gap_msg["Message"]
    assert "lost_samples: 120" in gap_msg["Message"] and "reason: retention" in gap_msg["Message"]
    assert _attr(gap_msg, "severity") == "warning"
    assert _attr(gap_msg, "dedup_key") == "gap:L1:temp_zone1"
    assert _attr(gap_msg, "source") == "edge-collector@test"
    assert _attr(backlog, "dedup_key") == "backlog:L1" and "backlog_files: 12" in backlog["Message"]
    # Below the critical age the same key is a warning, and the quiet window holds it back.
    assert not notify_backlog(notifier, "L1", 1000, 900, critical_after_s=1800)
    assert notifier.stats.sent == 2 and notifier.stats.suppressed == 1 and notifier.stats.failed == 0


def test_rate_limit_per_dedup_key_with_escalation(topic: Topic) -> None:
    clock = FakeClock()
    notifier = Notifier(
        [SnsSink(topic.arn, endpoint_url=topic.endpoint, region=REGION)], min_interval_s=300, clock=clock
    )
    assert notifier.notify("backlog L1", dedup_key="backlog:L1")
    assert not notifier.notify("backlog L1 again", dedup_key="backlog:L1")  # inside the window
    assert notifier.notify("gap L1", dedup_key="gap:L1")  # other key: own window
    assert notifier.notify("backlog L1 worse", severity="critical", dedup_key="backlog:L1")  # escalation
    assert not notifier.notify("backlog L1 still", severity="critical", dedup_key="backlog:L1")
    clock.now += 300
    assert notifier.notify("backlog L1 still", severity="warning", dedup_key="backlog:L1")
    subjects = sorted(m["Subject"] for m in topic.messages(expected=4))
    assert subjects == [
        "[CRITICAL] backlog L1 worse",
        "[WARNING] backlog L1",
        "[WARNING] backlog L1 still",
        "[WARNING] gap L1",
    ]
    assert notifier.stats.suppressed == 2 and notifier.stats.sent == 4


def test_delivery_failures_never_raise_and_do_not_start_the_quiet_window(topic: Topic) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    dead = SnsSink(topic.arn, endpoint_url=f"http://127.0.0.1:{closed_port()}", region=REGION, timeout_s=1)
    missing = SnsSink(topic.arn + "-missing", endpoint_url=topic.endpoint, region=REGION)

    class Exploding:
        name = "exploding"

        def send(self, alert: Alert) -> None:
            raise RuntimeError("sink bug")

    notifier = Notifier([dead, missing, Exploding()], min_interval_s=3600, registry=registry)
    assert notifier.notify("gap L1", dedup_key="gap:L1") is False
    assert notifier.stats.failed == 3 and notifier.stats.sent == 0
    assert registry.get_sample_value("edge_alerts_failed_total", {"sink": "sns"}) == 2
    assert registry.get_sample_value("edge_alerts_failed_total", {"sink": "exploding"}) == 1
    # Undelivered alerts do not start the quiet window: once a sink works, the same key goes out.
    notifier.sinks = [SnsSink(topic.arn, endpoint_url=topic.endpoint, region=REGION)]
    assert notifier.notify("gap L1", dedup_key="gap:L1") is True
    assert registry.get_sample_value("edge_alerts_sent_total", {"sink": "sns"}) == 1
    assert [m["Subject"] for m in topic.messages(expected=1)] == ["[WARNING] gap L1"]
    # Bad input to notify is logged and counted, not raised.
    assert notifier.notify("", dedup_key="x") is False
    assert notifier.notify("x", severity="loud") is False
    assert notifier.stats.failed == 5


def test_no_sink_configured_is_a_logged_noop() -> None:
    notifier = notifier_from_env({})
    assert not notifier.enabled
    assert notifier.notify("gap", "body") is False


def test_anotify_runs_off_the_event_loop(topic: Topic) -> None:
    import asyncio

    notifier = Notifier([SnsSink(topic.arn, endpoint_url=topic.endpoint, region=REGION)])
    assert asyncio.run(notifier.anotify("async gap", "b", dedup_key="g")) is True
    assert [m["Subject"] for m in topic.messages(expected=1)] == ["[WARNING] async gap"]


def test_ses_email_sink_against_moto(moto_server: str) -> None:
    ses = aws_client("ses", moto_server)
    ses.verify_email_identity(EmailAddress="alerts@factory.example")
    good = Notifier([SesSink("alerts@factory.example", ["oncall@factory.example"], endpoint_url=moto_server)])
    assert good.notify("gap L1", "body") is True
    unverified = Notifier([SesSink("nobody@elsewhere.example", ["x@y.example"], endpoint_url=moto_server)])
    assert unverified.notify("gap L1", "body") is False
    assert unverified.stats.failed == 1


def test_settings_validation_names_the_env_var() -> None:
    with pytest.raises(ValueError, match="EDGE_ALERT_SNS_TOPIC_ARN"):
        AlertSettings.from_env({"EDGE_ALERT_SNS_TOPIC_ARN": "factory-alerts"})
    with pytest.raises(ValueError, match="EDGE_ALERT_MIN_INTERVAL_S"):
        AlertSettings.from_env({"EDGE_ALERT_MIN_INTERVAL_S": "soon"})
    with pytest.raises(ValueError, match="EDGE_ALERT_EMAIL_FROM"):
        AlertSettings.from_env({"EDGE_ALERT_EMAIL_TO": "a@b.example"})
    with pytest.raises(ValueError, match="FACTORY_ALERT_SMTP_HOST"):
        alerting_resources(
            {"FACTORY_ALERT_EMAIL_TO": "a@b.example", "FACTORY_ALERT_EMAIL_FROM": "c@d.example",
             "FACTORY_ALERT_EMAIL_VIA": "smtp"}
        )  # fmt: skip
    s = AlertSettings.from_env(
        {"EDGE_ALERT_EMAIL_TO": "a@b.example, c@d.example", "EDGE_ALERT_EMAIL_FROM": "f@x"}
    )
    assert s.email_to == ("a@b.example", "c@d.example")


# ----------------------------------------------------------------------------------- dagster sensors


def _resource(topic: Topic) -> AlertNotifierResource:
    return alerting_resources(
        {
            "FACTORY_ALERT_SNS_TOPIC_ARN": topic.arn,
            "FACTORY_ALERT_SNS_ENDPOINT_URL": topic.endpoint,
            "FACTORY_ALERT_WEBSERVER_URL": "http://dagster.internal:3000",
        }
    )["alert_notifier"]


@op
def explode() -> None:
    raise ValueError("processed parquet write failed: disk full")


@job
def nightly_aggregates() -> None:
    explode()


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home)) as inst:
        yield inst


def test_sensors_are_exported_with_unique_names() -> None:
    names = [s.name for s in alerting_sensors]
    assert names == ["alert_on_run_failure", "alert_on_asset_check_failure", "alert_on_raw_freshness"]
    for s in alerting_sensors:
        assert "alert_notifier" in s.required_resource_keys


def test_run_failure_sensor_pages_via_sns(topic: Topic, instance: DagsterInstance) -> None:
    result = nightly_aggregates.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    context = build_run_status_sensor_context(
        sensor_name=run_failure_alert_sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"alert_notifier": _resource(topic)},
    ).for_run_failure()
    run_failure_alert_sensor(context)
    (msg,) = topic.messages(expected=1)
    assert msg["Subject"] == "[CRITICAL] Dagster run failed: nightly_aggregates"
    assert f"Run {result.run_id} of job nightly_aggregates failed." in msg["Message"]
    assert "Step explode: ValueError: processed parquet write failed: disk full" in msg["Message"]
    assert f"http://dagster.internal:3000/runs/{result.run_id}" in msg["Message"]
    assert _attr(msg, "dedup_key") == "dagster-run-failure:nightly_aggregates"
    assert _attr(msg, "source") == "dagster"


@asset
def production_table() -> int:
    return 3


@asset_check(asset=production_table)
def rows_present(production_table: int) -> AssetCheckResult:
    return AssetCheckResult(
        passed=production_table > 5,
        severity=AssetCheckSeverity.ERROR,
        description="fewer productions than the schedule planned",
        metadata={"rows": production_table},
    )


def test_asset_check_failure_sensor(topic: Topic, instance: DagsterInstance) -> None:
    resources = {"alert_notifier": _resource(topic)}
    materialize([production_table, rows_present], instance=instance)  # history before the sensor
    defs = Definitions(assets=[production_table], asset_checks=[rows_present])
    ctx = build_sensor_context(instance=instance, resources=resources, definitions=defs)
    assert isinstance(asset_check_failure_alert_sensor(ctx), SkipReason)
    assert ctx.cursor is not None  # initialised past history: no page for old failures
    assert topic.messages(expected=0, max_polls=1) == []

    materialize([production_table, rows_present], instance=instance)
    ctx2 = build_sensor_context(instance=instance, resources=resources, cursor=ctx.cursor, definitions=defs)
    skip = asset_check_failure_alert_sensor(ctx2)
    assert "1 failed" in skip.skip_message
    (msg,) = topic.messages(expected=1)
    assert msg["Subject"] == "[CRITICAL] Asset check failed: production_table rows_present"
    assert "fewer productions than the schedule planned" in msg["Message"]
    assert "rows: 3" in msg["Message"]
    assert _attr(msg, "dedup_key") == "dagster-check:production_table:rows_present"
    # Nothing new after the cursor: no second alert.
    ctx3 = build_sensor_context(instance=instance, resources=resources, cursor=ctx2.cursor, definitions=defs)
    assert "0 failed" in asset_check_failure_alert_sensor(ctx3).skip_message


def _check_event(run_id: str, planned: bool, passed: bool = False) -> EventLogEntry:
    """What a run logs for rows_present: its planned execution, or the evaluation completing it."""
    key = production_table.key
    data: Any = (
        AssetCheckEvaluationPlanned(asset_key=key, check_name="rows_present")
        if planned
        else AssetCheckEvaluation(asset_key=key, check_name="rows_present", passed=passed,
                                  severity=AssetCheckSeverity.ERROR,
                                  description="fewer productions than the schedule planned")
    )  # fmt: skip
    kind = (
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        if planned
        else DagsterEventType.ASSET_CHECK_EVALUATION
    )
    event = DagsterEvent(event_type_value=kind.value, job_name="nightly", event_specific_data=data)
    return EventLogEntry(
        error_info=None,
        level="INFO",
        user_message="",
        run_id=run_id,
        timestamp=time.time(),
        dagster_event=event,
    )


def test_a_check_planned_before_another_but_completed_after_it_still_alerts(
    topic: Topic, instance: DagsterInstance
) -> None:
    """Record ids are assigned when a run is planned: run A (planned first, slow) completes after run B.
    A cursor that only kept the highest id seen would move past A while it ran and never page for it."""
    resources = {"alert_notifier": _resource(topic)}
    defs = Definitions(assets=[production_table], asset_checks=[rows_present])
    storage = instance.event_log_storage
    ctx = build_sensor_context(instance=instance, resources=resources, definitions=defs)
    asset_check_failure_alert_sensor(ctx)

    storage.store_event(_check_event("run-a", planned=True))
    storage.store_event(_check_event("run-b", planned=True))
    storage.store_event(_check_event("run-b", planned=False, passed=True))
    ctx2 = build_sensor_context(instance=instance, resources=resources, cursor=ctx.cursor, definitions=defs)
    assert "0 failed" in asset_check_failure_alert_sensor(ctx2).skip_message
    storage.store_event(_check_event("run-a", planned=False, passed=False))
    ctx3 = build_sensor_context(instance=instance, resources=resources, cursor=ctx2.cursor, definitions=defs)
    assert "1 failed" in asset_check_failure_alert_sensor(ctx3).skip_message
    (msg,) = topic.messages(expected=1)
    assert msg["Subject"] == "[CRITICAL] Asset check failed: production_table rows_present"
    assert "run-a" in msg["Message"] or _attr(msg, "run_id") == "run-a"
    (a,) = [r for r in storage.get_asset_check_execution_history(rows_present.check_key, limit=5)
            if r.run_id == "run-a"]  # fmt: skip
    name = rows_present.check_key.to_user_string()
    assert json.loads(ctx2.cursor)[name]["pending"] == [a.id]  # kept while A ran
    assert json.loads(ctx3.cursor)[name]["pending"] == []


def test_the_check_cursor_of_an_earlier_release_is_read_as_handled_up_to_its_id() -> None:
    assert check_cursor.parse_all('{"a": 7}', ["a"]) == {"a": check_cursor.CheckCursor(7)}
    assert check_cursor.parse_all("12", ["first", "second"]) == {"first": check_cursor.CheckCursor(12)}
    parsed = check_cursor.parse_all('{"a": {"after": 9, "pending": [3, 5]}}', ["a"])
    assert parsed == {"a": check_cursor.CheckCursor(9, (3, 5))}
    assert check_cursor.parse_all(None, ["a"]) is None


def _put_raw(s3: Any, bucket: str, line: str, start_ns: int) -> str:
    t = start_ns + np.arange(10, dtype=np.int64) * 100_000_000
    block = ChannelBlock(1, "temp_zone1", "degC", 10.0, 42, t, np.linspace(20, 21, 10))
    batch = RawBatch(line, "g0", (block,))
    key = batch_key(batch)
    s3.put_object(Bucket=bucket, Key=key, Body=encode_batch(batch))
    return key


def test_raw_freshness_sensor_alerts_stale_lines_and_recovery(
    topic: Topic, s3_bucket: str, s3_client: Any, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_LINES", "L1,L2,L3")
    monkeypatch.setenv("FACTORY_ALERT_RAW_MAX_AGE_MINUTES", "15")
    now = time.time_ns()
    _put_raw(s3_client, s3_bucket, "L1", now - 120 * 10**9)  # 2 min old: fresh
    _put_raw(s3_client, s3_bucket, "L2", now - 2 * 3600 * 10**9)  # 2 h old: stale
    s3_client.put_object(Bucket=s3_bucket, Key="raw/line=L1/date=2020-01-01/hour=00/README", Body=b"x")
    store = S3ObjectStoreResource(bucket=s3_bucket, endpoint_url=moto_server)
    resources = {"alert_notifier": _resource(topic), "object_store": store}

    f1 = line_freshness(store.get_store(), "L1", now, 900)
    assert not f1.stale and 119 <= f1.age_s <= 121
    f3 = line_freshness(store.get_store(), "L3", now, 900, lookback_hours=2)
    assert f3.stale and f3.newest_start_ns is None

    ctx = build_sensor_context(resources=resources)
    skip = raw_freshness_alert_sensor(ctx)
    assert skip.skip_message == "stale lines: L2, L3"
    assert json.loads(ctx.cursor) == ["L2", "L3"]
    msgs = {m["Subject"]: m for m in topic.messages(expected=2)}
    assert set(msgs) == {
        "[CRITICAL] No raw data from line L2 for 15 min",
        "[CRITICAL] No raw data from line L3 for 15 min",
    }
    l2 = msgs["[CRITICAL] No raw data from line L2 for 15 min"]
    assert "newest raw data starts" in l2["Message"] and _attr(l2, "dedup_key") == "raw-freshness:L2"
    assert (
        "no raw object in the last 24 h" in msgs["[CRITICAL] No raw data from line L3 for 15 min"]["Message"]
    )

    # Still stale on the next evaluation: the notifier's quiet window holds the page back.
    raw_freshness_alert_sensor(build_sensor_context(resources=resources, cursor=ctx.cursor))
    assert topic.messages(expected=0, max_polls=1) == []

    # L2 comes back: one recovery notice; L3 stays down.
    _put_raw(s3_client, s3_bucket, "L2", time.time_ns() - 30 * 10**9)
    ctx3 = build_sensor_context(resources=resources, cursor=ctx.cursor)
    assert raw_freshness_alert_sensor(ctx3).skip_message == "stale lines: L3"
    (msg,) = topic.messages(expected=1)
    assert msg["Subject"] == "[INFO] Raw data from line L2 is arriving again"


def test_collector_alerting_imports_no_cloud_stack() -> None:
    """The collector image has no dagster/pandas: the notifier must not pull them in."""
    import subprocess
    import sys

    code = (
        "import sys, factory_core.alerting, edge_collector.alerts; "
        "bad = {'dagster', 'pandas', 'polars', 'xgboost'} & set(sys.modules); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_misconfigured_dagster_notifier_drops_the_alert_without_raising() -> None:
    resource = AlertNotifierResource(sns_topic_arn="not-an-arn", email_via="pigeon")
    assert resource.notify("run failed", "body") is False


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) to accept one message: EHLO, MAIL, RCPT, DATA, QUIT."""

    def handle(self) -> None:
        inbox: list[bytes] = self.server.inbox  # type: ignore[attr-defined]
        self.wfile.write(b"220 test ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-test\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                inbox.append(data)
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_smtp_email_sink_over_a_real_socket() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.inbox = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "EDGE_ALERT_EMAIL_TO": "oncall@factory.example",
            "EDGE_ALERT_EMAIL_FROM": "edge@factory.example",
            "EDGE_ALERT_EMAIL_VIA": "smtp",
            "EDGE_ALERT_SMTP_HOST": "127.0.0.1",
            "EDGE_ALERT_SMTP_PORT": str(server.server_address[1]),
            "EDGE_ALERT_SMTP_STARTTLS": "false",
        }
        notifier = notifier_from_env(env, source="edge-collector@test")
        assert notifier.notify(
            "Spool 85 % full on L1", "Grow the volume.", severity="critical", dedup_key="spool:L1"
        )
    finally:
        server.shutdown()
        server.server_close()
    (raw,) = server.inbox  # type: ignore[attr-defined]
    msg = email.message_from_bytes(raw)
    assert msg["Subject"] == "[CRITICAL] Spool 85 % full on L1"
    assert msg["To"] == "oncall@factory.example" and msg["X-Alert-Dedup-Key"] == "spool:L1"
    assert "Grow the volume." in msg.get_payload()
