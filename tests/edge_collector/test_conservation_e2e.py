"""End-to-end collector tests: real sensor server over TCP, moto S3 over HTTP, fault proxies between.

Each test proves conservation: every (channel, seq) the sensor produced from the collector's first
contact to the end of the test window is in S3 (decoded, values byte-identical to the simulator) or
in the gap ledger with exact bounds, and nothing else. Virtual clock at 60x, retention 240 s (4 s real).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from factory_core.rawformat import decode_batch
from tests.support.collector import (
    PYTHON,
    REPO,
    RETENTION_S,
    SPEED,
    SensorThread,
    TestClock,
    check,
    collector_env,
    cursors_on_disk,
    finish,
    start,
    wait_until,
)


def test_conservation_under_sensor_and_s3_faults(rig: dict[str, Any]) -> None:
    """Connection resets + corrupt frames from the sensor, 500/503 SlowDown from S3: nothing lost."""
    rig["tcp"].drop_prob = 0.03
    rig["tcp"].corrupt_prob = 0.03
    rig["http"].error_rate = 0.3
    col = start(rig, request_timeout_s=1.0)
    time.sleep(6)
    assert col.alive
    assert rig["tcp"].stats["dropped"] > 0 and rig["tcp"].stats["corrupted"] > 0
    assert rig["http"].stats["injected"] > 0
    poll_errors = col.metric("edge_poll_errors_total")
    upload_errors = col.metric("edge_upload_errors_total")
    assert poll_errors > 0 and upload_errors > 0
    rig["tcp"].drop_prob = rig["tcp"].corrupt_prob = 0.01
    # Blackhole: connections stay up, nothing arrives; per-request timeouts must trigger reconnects.
    rig["tcp"].blackhole = True
    time.sleep(2.5)
    assert col.metric("edge_poll_errors_total") > poll_errors
    rig["tcp"].blackhole = False
    assert col.alive
    heads = finish(rig, col)
    cov = check(rig, heads)
    assert cov.objects > 5
    # `edge-collector inspect s3://...` decodes a stored object into one row per sample.
    key = next(iter(rig["store"].list("raw/")))
    batch = decode_batch(rig["store"].get(key))
    out = subprocess.run(
        [PYTHON, "-m", "edge_collector.cli", "inspect", "--format", "jsonl", f"s3://{rig['bucket']}/{key}",
         "--endpoint-url", rig["store"].endpoint_url],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert len(out) == sum(b.count for b in batch.blocks)
    first = json.loads(out[0])
    assert (first["channel_id"], first["seq"]) == (batch.blocks[0].channel_id, batch.blocks[0].first_seq)


def test_s3_outage_longer_than_retention_drains_without_loss(rig: dict[str, Any]) -> None:
    col = start(rig)
    time.sleep(1)
    rig["http"].down = True
    time.sleep(1.5 * RETENTION_S / SPEED)  # 360 virtual seconds > 240 s retention
    assert col.metric("edge_backlog_files") > 0
    assert col.metric("edge_upload_errors_total") > 0
    rig["http"].down = False
    heads = finish(rig, col)
    cov = check(rig, heads)
    assert cov.gaps == {}, f"an S3 outage must cost disk, not data: {cov.gaps}"


def test_collector_down_longer_than_retention_records_exact_gap(rig: dict[str, Any]) -> None:
    col = start(rig)
    time.sleep(1.5)
    rig["clock"].pause()
    col.stop()
    at_stop = cursors_on_disk(rig["spool"])
    rig["clock"].jump(RETENTION_S + 200)  # collector "down" for 440 virtual seconds
    oldest = {cid: o for cid, (o, _) in rig["sensor"].heads().items()}
    col = start(rig, resume=False)  # clock paused: the first read sees exactly `oldest`
    wait_until(lambda: col.metric("edge_gaps_total") >= len(oldest), 20, "gap records")
    rig["clock"].resume()
    heads = finish(rig, col)
    cov = check(rig, heads)
    for cid in oldest:
        assert cov.gaps[cid] == [(at_stop[cid], oldest[cid], "retention_expired")], cid
    env = collector_env(
        spool_dir=rig["spool"], store_url=f"s3://{rig['bucket']}", s3_endpoint_url=rig["store"].endpoint_url
    )
    status = json.loads(
        subprocess.run(
            [PYTHON, "-m", "edge_collector.cli", "status", "--store"],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=True,
        ).stdout
    )
    assert status["backlog"]["files"] == 0
    assert status["cursors"] == {str(c): h for c, h in sorted(heads.items())}
    lost = sum(oldest[c] - at_stop[c] for c in oldest)
    assert status["ledger"]["store"]["by_reason"] == {
        "retention_expired": {"records": len(oldest), "samples": lost, "lost_samples": lost}
    }
    assert status["ledger"]["store"]["lost_samples"] == lost


def test_disk_budget_pauses_polling_alerts_and_records_loss(rig: dict[str, Any]) -> None:
    rig["http"].down = True  # nothing drains: the spool only grows
    col = start(rig, spool_max_bytes=1_500_000, spool_warn_ratio=0.5)
    seen_early_alert = False  # the alert must be visible while polling still runs

    def paused() -> bool:
        nonlocal seen_early_alert
        alert, is_paused = col.metric("edge_spool_budget_alert"), col.metric("edge_polling_paused")
        seen_early_alert |= alert == 1 and is_paused == 0
        return is_paused == 1

    wait_until(paused, 30, "budget pause", interval=0.02)
    assert seen_early_alert, "edge_spool_budget_alert must fire before polling stops"
    assert col.metric("edge_spool_budget_alert") == 1
    assert col.metric("edge_spool_budget_used_ratio") >= 1.0
    files = sorted(p.name for p in rig["spool"].glob("*.spl"))
    time.sleep(0.8)
    assert sorted(p.name for p in rig["spool"].glob("*.spl")) == files, "spool changed while paused"
    rig["clock"].pause()
    at_pause = cursors_on_disk(rig["spool"])
    rig["clock"].jump(RETENTION_S + 60)  # data ages out of the sensor while polling is paused
    oldest = {cid: o for cid, (o, _) in rig["sensor"].heads().items()}
    rig["http"].down = False  # the spool drains, polling resumes and meets the GAP
    wait_until(lambda: col.metric("edge_polling_paused") == 0, 30, "resume after drain")
    heads = finish(rig, col)
    cov = check(rig, heads)
    for cid in heads:
        assert cov.gaps[cid] == [(at_pause[cid], oldest[cid], "spool_budget_full")], cid


def test_sensor_restart_with_seq_backwards_is_recorded(rig: dict[str, Any]) -> None:
    col = start(rig)
    time.sleep(1.5)
    rig["clock"].pause()
    port = rig["sensor"].port
    rig["tcp"].reset_all()
    rig["sensor"].stop()
    # The restarted sensor system's clock is 60 virtual seconds behind: seqs go backwards.
    clock2 = TestClock(rig["clock"]() - 60 * 10**9, SPEED)
    rig["sensor"] = SensorThread(clock2, retention_s=RETENTION_S, port=port)
    rig["clock"] = clock2
    wait_until(lambda: col.metric('edge_sensor_anomalies_total{kind="seq_backwards"}') > 0 or
               col.metric("edge_sensor_anomalies_total") > 0, 20, "restart detected")  # fmt: skip
    time.sleep(2.5)  # the restarted sensor overtakes the old cursor (60 s virtual = 1 s real)
    heads = finish(rig, col)
    cov = check(rig, heads, allow=("sensor_seq_backwards",))
    back = [(cid, g) for cid, gs in cov.gaps.items() for g in gs if g[2] == "sensor_seq_backwards"]
    assert len(back) == len(heads), "one backwards record per channel"
