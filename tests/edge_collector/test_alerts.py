"""The collector pages a person: real sensor server, moto S3 + SNS -> SQS over HTTP, fault proxies.

Alert destinations come from the same `EDGE_ALERT_*` variables production uses (read by the
Collector at construction), so these tests also cover the env wiring. Scenarios reuse the e2e rig
(virtual clock at 60x, retention 240 s = 4 s real) and end with the conservation check where data
flow is part of the claim.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from edge_collector.config import ConfigError, load_config
from edge_collector.daemon import Collector
from factory_core.store import LocalDirStore
from tests.support.aws import Topic, closed_port
from tests.support.collector import RETENTION_S, check, cursors_on_disk, finish, start, wait_until


def _alert_env(monkeypatch: pytest.MonkeyPatch, arn: str, endpoint: str, **extra: str) -> None:
    monkeypatch.setenv("EDGE_ALERT_SNS_TOPIC_ARN", arn)
    monkeypatch.setenv("EDGE_ALERT_SNS_ENDPOINT_URL", endpoint)
    for k, v in extra.items():
        monkeypatch.setenv(f"EDGE_ALERT_{k.upper()}", v)


def _collect(inbound: Topic, inbox: list[dict[str, Any]], done: Any, timeout: float, what: str) -> None:
    """Drain the SQS queue into ``inbox`` until ``done(inbox)``."""

    def step() -> bool:
        inbox.extend(inbound.messages(expected=0, max_polls=1))
        return bool(done(inbox))

    wait_until(step, timeout, what, interval=0.1)


def _stop_longer_than_retention(
    r: dict[str, Any], col: Any, **over: Any
) -> tuple[dict[int, int], dict[int, int], Any]:
    """Collect briefly, stop, let 440 virtual seconds pass, restart: every channel meets a GAP."""
    time.sleep(1.5)
    r["clock"].pause()
    col.stop()
    at_stop = cursors_on_disk(r["spool"])
    r["clock"].jump(RETENTION_S + 200)
    oldest = {cid: o for cid, (o, _) in r["sensor"].heads().items()}
    col = start(r, resume=False, **over)
    wait_until(lambda: col.metric("edge_gaps_total") >= len(oldest), 20, "gap records")
    return at_stop, oldest, col


def test_gap_alert_names_line_channel_and_exact_bounds(
    rig: dict[str, Any],
    topic: Topic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _alert_env(monkeypatch, topic.arn, topic.endpoint)
    col = start(rig)
    at_stop, oldest, col = _stop_longer_than_retention(rig, col)
    names = {c.id: c.name for c in rig["sensor"].server.channels}
    inbox: list[dict[str, Any]] = []
    _collect(topic, inbox, lambda box: len(box) >= len(oldest), 20, "one gap alert per channel")
    wait_until(lambda: col.metric("edge_alerts_sent_total") == len(oldest), 5, "sent counter")
    assert col.metric("edge_alerts_failed_total") == 0
    col.stop()
    assert len(inbox) == len(oldest), [m["Subject"] for m in inbox]
    by_channel = {m["MessageAttributes"]["dedup_key"]["Value"]: m for m in inbox}
    for cid, lost_to in oldest.items():
        msg = by_channel[f"gap:L1:{names[cid]}"]
        lost = lost_to - at_stop[cid]
        assert msg["Subject"] == f"[WARNING] Gap on line L1: {names[cid]} lost {lost} samples"
        assert f"Samples [{at_stop[cid]}, {lost_to}) of {names[cid]} (channel {cid})" in msg["Message"]
        assert "reason: retention_expired" in msg["Message"]


def test_s3_outage_backlog_and_budget_alerts_once_per_window(
    rig: dict[str, Any],
    topic: Topic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _alert_env(monkeypatch, topic.arn, topic.endpoint, min_interval_s="3600")
    rig["http"].down = True
    col = start(
        rig,
        alert_backlog_age_s=0.5,
        alert_check_interval_s=0.1,
        spool_max_bytes=50_000_000,
        spool_warn_ratio=0.001,  # 50 kB: crossed within a second of polling, far from pausing
    )
    inbox: list[dict[str, Any]] = []

    def kinds(box: list[dict[str, Any]]) -> list[str]:
        return sorted(m["MessageAttributes"]["dedup_key"]["Value"] for m in box)

    _collect(topic, inbox, lambda box: len(box) >= 2, 20, "backlog + budget alerts")
    suppressed = col.metric("edge_alerts_suppressed_total")
    wait_until(lambda: col.metric("edge_alerts_suppressed_total") >= suppressed + 10, 10, "repeat checks")
    inbox.extend(topic.messages(expected=0, max_polls=2))
    assert kinds(inbox) == ["backlog:L1", "spool_budget:L1"], [m["Subject"] for m in inbox]
    backlog = next(m for m in inbox if m["MessageAttributes"]["dedup_key"]["Value"] == "backlog:L1")
    assert backlog["Subject"].startswith("[WARNING] Upload backlog on line L1")
    assert "threshold_s: 0.5" in backlog["Message"] and "line: L1" in backlog["Message"]
    budget = next(m for m in inbox if m is not backlog)
    assert "polling continues" in budget["Message"]
    assert col.metric("edge_upload_errors_total") > 0
    rig["http"].down = False
    heads = finish(rig, col)
    cov = check(rig, heads)
    assert cov.gaps == {}


def test_unreachable_sns_never_disturbs_collection(
    rig: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    _alert_env(monkeypatch, "arn:aws:sns:us-east-1:123456789012:nowhere", dead, timeout_s="0.5")
    fast = {"alert_backlog_age_s": 0.2, "alert_check_interval_s": 0.1}
    col = start(rig, **fast)
    at_stop, oldest, col = _stop_longer_than_retention(rig, col, **fast)
    wait_until(lambda: col.metric("edge_alerts_failed_total") >= len(oldest), 30, "failed deliveries")
    assert col.metric("edge_alerts_sent_total") == 0
    rig["clock"].resume()
    time.sleep(1.0)
    heads = finish(rig, col)
    cov = check(rig, heads)
    for cid in oldest:
        assert cov.gaps[cid] == [(at_stop[cid], oldest[cid], "retention_expired")], cid


def _alert_env_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EDGE_ALERT_"):
            monkeypatch.delenv(name)


def test_no_destination_means_no_alert_machinery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _alert_env_cleared(monkeypatch)
    cfg = load_config(None, env={}, spool_dir=str(tmp_path / "spool"), metrics_port=-1)
    col = Collector(cfg, store=LocalDirStore(tmp_path / "objects"))
    assert not col.notifier.enabled
    assert col.alerts is None and col.ledger.on_recorded is None


def test_alert_settings_are_validated_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"alert_backlog_age_s \(EDGE_ALERT_BACKLOG_AGE_S\): must be > 0"):
        load_config(None, env={"EDGE_ALERT_BACKLOG_AGE_S": "0"})
    with pytest.raises(ConfigError, match=r"EDGE_ALERT_CHECK_INTERVAL_S\): expected float"):
        load_config(None, env={"EDGE_ALERT_CHECK_INTERVAL_S": "often"})
    _alert_env_cleared(monkeypatch)
    monkeypatch.setenv("EDGE_ALERT_SNS_TOPIC_ARN", "factory-alerts")
    cfg = load_config(None, env={}, spool_dir=str(tmp_path / "spool"), metrics_port=-1)
    with pytest.raises(ConfigError, match="EDGE_ALERT_SNS_TOPIC_ARN: must be an SNS topic ARN"):
        Collector(cfg, store=LocalDirStore(tmp_path / "objects"))
