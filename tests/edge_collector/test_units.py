"""Unit tests of the collector's building blocks on real files and real processes (no mocks).

Config validation, durable spool writes (incl. a failing fsync), cursor derivation from the spool,
disk-budget alerting, the gap ledger, JSON logs and the inspect/status/check-config subcommands.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_collector.budget import DiskBudget
from edge_collector.config import ConfigError, load_config
from edge_collector.cursors import CursorStore
from edge_collector.ledger import GapLedger
from edge_collector.metrics import CollectorMetrics
from factory_core.layout import batch_key
from factory_core.logs import configure_json_logging
from factory_core.outbox.spool import Spool, SpoolCorruptError, SpoolHeader, SpoolWriteError, decode_file
from factory_core.rawformat import ChannelBlock, GapRecord, RawBatch, decode_batch, encode_batch
from tests.support.collector import PYTHON, REPO, T0_NS, collector_env

# ---------------------------------------------------------------------------------------------- config


def test_config_file_then_env_override(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[collector]\nsensor_port = 6000\npoll_interval_s = 30\nstore_url = "s3://b/p"\n')
    cfg = load_config(f, env={"EDGE_POLL_INTERVAL_S": "5.5"})
    assert (cfg.sensor_port, cfg.poll_interval_s, cfg.store_url) == (6000, 5.5, "s3://b/p")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EDGE_POLL_INTERVAL_S": "0"}, "EDGE_POLL_INTERVAL_S"),
        ({"EDGE_SENSOR_PORT": "abc"}, "EDGE_SENSOR_PORT"),
        ({"EDGE_SPOOL_WARN_RATIO": "1.5"}, "EDGE_SPOOL_WARN_RATIO"),
        ({"EDGE_S3_CHECKSUM": "always"}, "EDGE_S3_CHECKSUM"),
        ({"EDGE_RECONNECT_MAX_S": "0.1", "EDGE_RECONNECT_INITIAL_S": "1"}, "EDGE_RECONNECT_MAX_S"),
        ({"EDGE_S3_ENDPOINT_URL": "localhost:9000"}, "EDGE_S3_ENDPOINT_URL"),
    ],
)
def test_config_errors_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(None, env=env)


def test_config_unknown_key_and_bad_toml(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("poll_intervall_s = 3\n")
    with pytest.raises(ConfigError, match="poll_intervall_s"):
        load_config(f, env={})
    f.write_text("poll_interval_s = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(f, env={})


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    ok = subprocess.run(
        [PYTHON, "-m", "edge_collector.cli", "check-config"],
        env=collector_env(poll_interval_s=7), capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["poll_interval_s"] == 7.0
    bad = subprocess.run(
        [PYTHON, "-m", "edge_collector.cli", "check-config"],
        env=collector_env(max_samples=-3), capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "EDGE_MAX_SAMPLES" in bad.stderr


# ----------------------------------------------------------------------------------------------- spool


def _batch(first: int, n: int, cid: int = 3) -> RawBatch:
    t = T0_NS + np.arange(first, first + n, dtype=np.int64) * 100_000_000
    return RawBatch("L1", "g00", (ChannelBlock(cid, "temp_zone1", "degC", 10.0, first, t, np.sin(t / 1e9)),))


def _spool_batch(spool: Spool, batch: RawBatch) -> None:
    b = batch.blocks[0]
    header = SpoolHeader(
        "batch", batch_key(batch), "L1", {b.channel_id: (b.first_seq, b.first_seq + b.count)}
    )
    spool.write(header, encode_batch(batch))


def test_spool_roundtrip_and_restart_scan(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _spool_batch(spool, _batch(100, 50))
    _spool_batch(spool, _batch(150, 10))
    (tmp_path / ".tmp-leftover").write_bytes(b"half a write")
    again = Spool(tmp_path)
    assert not (tmp_path / ".tmp-leftover").exists()
    entries = again.entries()
    assert [e.seqno for e in entries] == [0, 1]
    header, payload = again.read(entries[0])
    assert decode_batch(payload).blocks[0].first_seq == 100
    assert header.key == batch_key(_batch(100, 50))
    assert again.total_bytes == sum(e.size for e in entries)


def test_spool_detects_corruption(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _spool_batch(spool, _batch(0, 20))
    path = spool.entries()[0].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    with pytest.raises(SpoolCorruptError, match="CRC"):
        decode_file(bytes(data))


def test_failed_fsync_rewrites_to_a_new_file(tmp_path: Path) -> None:
    """A failed fsync is never retried on the same file: the batch goes to a fresh temp file."""
    synced: list[tuple[str, bool]] = []  # (path fsynced, succeeded)

    def flaky_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not synced and not os.path.isdir(path):
            synced.append((path, False))
            raise OSError(5, "Input/output error (injected)")
        synced.append((path, True))
        os.fsync(fd)

    spool = Spool(tmp_path, fsync=flaky_fsync)
    _spool_batch(spool, _batch(0, 30))
    entry = spool.entries()[0]
    failed, retried = synced[0], synced[1]
    assert not failed[1] and retried[1] and failed[0] != retried[0]
    assert ".tmp-" in failed[0] and ".tmp-" in retried[0]
    assert decode_batch(spool.read(entry)[1]).blocks[0].count == 30
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_persistent_fsync_failure_stops(tmp_path: Path) -> None:
    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device (injected)")

    spool = Spool(tmp_path, fsync=broken)
    with pytest.raises(SpoolWriteError):
        _spool_batch(spool, _batch(0, 5))
    assert spool.entries() == []
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_cursors_derive_from_spool_when_ahead_of_file(tmp_path: Path) -> None:
    """Crash between spool write and cursor persist: the spool header still moves the cursor."""
    spool = Spool(tmp_path)
    cursors = CursorStore(tmp_path)
    cursors.advance({3: 100, 4: 7})
    cursors.persist()
    _spool_batch(spool, _batch(100, 50))  # durable, but cursor file not updated ("crash")
    fresh = CursorStore(tmp_path)
    assert fresh.load_with_spool(Spool(tmp_path)) == {3: 150, 4: 7}
    fresh.advance({3: 120})  # never backwards
    assert fresh.get(3) == 150


# --------------------------------------------------------------------------------------- budget, ledger


def test_budget_alert_fires_before_pause(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    metrics = CollectorMetrics()
    _spool_batch(spool, _batch(0, 200))
    size = spool.total_bytes
    budget = DiskBudget(spool, max_bytes=int(size / 0.85), warn_ratio=0.8, metrics=metrics)
    assert budget.refresh() is False
    assert metrics.spool_budget_alert._value.get() == 1
    assert metrics.polling_paused._value.get() == 0
    _spool_batch(spool, _batch(200, 200))
    assert budget.refresh() is True
    assert metrics.polling_paused._value.get() == 1 and budget.pause_epoch == 1
    for entry in spool.entries():
        spool.remove(entry)
    assert budget.refresh() is False
    assert metrics.spool_budget_alert._value.get() == 0


def test_ledger_spools_gap_with_exact_bounds(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    metrics = CollectorMetrics()
    gap = GapRecord("L1", 3, "temp_zone1", 1000, 1600, T0_NS, T0_NS + 60 * 10**9, T0_NS, "retention_expired")
    entry = GapLedger(spool, metrics).record("L1", [gap])
    header, _ = spool.read(entry)
    assert header.kind == "gaps" and header.ranges == {3: (1000, 1600)}
    assert CursorStore(tmp_path).load_with_spool(spool) == {3: 1600}
    assert metrics.gap_samples.labels("retention_expired")._value.get() == 600


def test_json_logs_one_object_per_line() -> None:
    import logging

    buf = io.StringIO()
    configure_json_logging("DEBUG", stream=buf)
    logging.getLogger("x").warning("hello", extra={"fields": {"event": "gap", "channel_id": 3}})
    row = json.loads(buf.getvalue().strip())
    assert row["msg"] == "hello" and row["event"] == "gap" and row["channel_id"] == 3
    assert row["level"] == "warning"
    configure_json_logging("WARNING")


# ---------------------------------------------------------------------------------- inspect and status


def test_inspect_and_status_cli(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    _spool_batch(spool, _batch(40, 3))
    gap = GapRecord("L1", 3, "temp_zone1", 10, 40, T0_NS, T0_NS, T0_NS, "retention_expired")
    GapLedger(spool, CollectorMetrics()).record("L1", [gap])
    obj = tmp_path / "obj.fsr"
    obj.write_bytes(encode_batch(_batch(40, 3)))
    env = collector_env(spool_dir=spool_dir)
    out = subprocess.run(
        [PYTHON, "-m", "edge_collector.cli", "inspect", str(obj)],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert out[0].startswith("line,group,channel_id,channel,seq,t_ns,time,value")
    assert [r.split(",")[4] for r in out[1:]] == ["40", "41", "42"]
    gap_file = spool.entries()[1].path
    rows = subprocess.run(
        [PYTHON, "-m", "edge_collector.cli", "inspect", "--format", "jsonl", str(gap_file)],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert [(json.loads(r)["lost_from_seq"], json.loads(r)["lost_to_seq"]) for r in rows] == [(10, 40)]
    status = json.loads(
        subprocess.run(
            [PYTHON, "-m", "edge_collector.cli", "status"],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=True,
        ).stdout
    )
    assert status["backlog"]["files"] == 2 and status["backlog"]["gap_files"] == 1
    assert status["cursors"] == {"3": 43}
    assert status["ledger"]["pending_gap_records"][0]["lost_to_seq"] == 40
    bad = subprocess.run(
        [PYTHON, "-m", "edge_collector.cli", "inspect", str(spool_dir / "cursors.json")],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0


@pytest.mark.parametrize("cmd", ["run", "check-config", "status", "inspect"])
def test_every_subcommand_has_help(cmd: str) -> None:
    res = subprocess.run(
        [PYTHON, "-m", "edge_collector.cli", cmd, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 0 and "usage: edge-collector" in res.stdout
