"""End-to-end collector tests: real sensor server over TCP, moto S3 over HTTP, fault proxies between.

Each test proves conservation: every (channel, seq) the sensor produced from the collector's first
contact to the end of the test window is in S3 (decoded, values byte-identical to the simulator) or
in the gap ledger with exact bounds, and nothing else. Virtual clock at 60x, retention 240 s (4 s real).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_collector.config import CollectorConfig, load_config
from edge_collector.daemon import Collector
from edge_collector.rawformat import decode_batch
from edge_collector.store import S3Store
from tests.faultproxy import HttpFaultProxy, TcpFaultProxy
from tests.test_collector_support import (
    PYTHON,
    REPO,
    T0_NS,
    SensorThread,
    TestClock,
    assert_conserved,
    collector_env,
    read_coverage,
    sim_value_checker,
    wait_until,
)

SPEED = 60.0
RETENTION_S = 240.0


class CollectorThread:
    """An in-process Collector on its own event loop thread (stoppable like SIGTERM would)."""

    def __init__(self, cfg: CollectorConfig) -> None:
        self.collector = Collector(cfg)
        self.rc: int | None = None
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _main(self) -> None:
        async def go() -> int:
            self._stop = asyncio.Event()
            self._ready.set()
            return await self.collector.run(self._stop, install_signals=False)

        try:
            self.rc = self._loop.run_until_complete(go())
        except BaseException as exc:
            self.error = exc
        finally:
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def metric(self, name: str) -> float:
        """Scrape /metrics over HTTP and return the sum of the series named ``name``."""
        wait_until(lambda: self.collector.metrics_port is not None, 10, "metrics endpoint")
        url = f"http://127.0.0.1:{self.collector.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> int:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "collector did not stop"
        if self.error is not None:
            raise self.error
        assert self.rc == 0
        return self.rc


@contextlib.contextmanager
def collector_rig(
    tmp_path: Path, s3_bucket: str, moto_server: str, sensor_cls: type[SensorThread] = SensorThread
) -> Iterator[dict[str, Any]]:
    """A paused test clock, a sensor server (``sensor_cls``) behind a TCP fault proxy, moto behind an
    HTTP fault proxy, and the spool path: what start/finish/check below work on."""
    clock = TestClock(T0_NS, SPEED)
    clock.pause()
    sensor = sensor_cls(clock, retention_s=RETENTION_S)
    tcp = TcpFaultProxy("127.0.0.1", sensor.port, seed=1)
    http = HttpFaultProxy(moto_server, seed=2)
    rig = {
        "clock": clock,
        "sensor": sensor,
        "tcp": tcp,
        "http": http,
        "bucket": s3_bucket,
        "store": S3Store(s3_bucket, endpoint_url=moto_server),
        "spool": tmp_path / "spool",
        "start": sensor.heads(),
    }
    yield rig
    tcp.close()
    http.close()
    rig["sensor"].stop()  # the restart test replaces the sensor


@pytest.fixture
def rig(tmp_path: Path, s3_bucket: str, moto_server: str) -> Iterator[dict[str, Any]]:
    with collector_rig(tmp_path, s3_bucket, moto_server) as r:
        yield r


def make_cfg(rig: dict[str, Any], **over: Any) -> CollectorConfig:
    settings: dict[str, Any] = {
        "sensor_port": rig["tcp"].port,
        "spool_dir": str(rig["spool"]),
        "store_url": f"s3://{rig['bucket']}",
        "s3_endpoint_url": rig["http"].url,
        "poll_interval_s": 0.2,
        "request_timeout_s": 2.0,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.5,
        "upload_retry_initial_s": 0.05,
        "upload_retry_max_s": 0.5,
        "metrics_port": 0,
        "group_size": 8,
        "max_concurrent_polls": 2,
        "max_samples": 5000,
    }
    settings.update(over)
    return load_config(None, env={}, **settings)


def cursors_on_disk(spool: Path) -> dict[int, int]:
    path = spool / "cursors.json"
    if not path.exists():
        return {}
    return {int(c): s for c, s in json.loads(path.read_text())["cursors"].items()}


def start(rig: dict[str, Any], resume: bool = True, **over: Any) -> CollectorThread:
    """Start a collector; on first contact wait until every channel has a cursor, then run the clock."""
    first = not cursors_on_disk(rig["spool"])
    col = CollectorThread(make_cfg(rig, **over))
    if first:
        wait_until(lambda: len(cursors_on_disk(rig["spool"])) == len(rig["start"]), 20, "cursor init")
    if resume:
        rig["clock"].resume()
    return col


def finish(rig: dict[str, Any], col: CollectorThread, timeout: float = 40.0) -> dict[int, int]:
    """Freeze the sensor clock, let the collector catch up and drain, stop it; return the heads."""
    rig["clock"].pause()
    heads = {cid: h for cid, (_, h) in rig["sensor"].heads().items()}

    def done() -> bool:
        cur = cursors_on_disk(rig["spool"])
        caught = all(cur.get(c, -1) >= h for c, h in heads.items())
        return caught and not any(rig["spool"].glob("*.spl"))

    wait_until(done, timeout, "catch-up and drain")
    col.stop()
    return heads


def check(rig: dict[str, Any], heads: dict[int, int], allow: tuple[str, ...] = ()) -> Any:
    cov = read_coverage(rig["store"], sim_value_checker(rig["sensor"]))
    expected = {cid: (rig["start"][cid][0], heads[cid]) for cid in heads}
    assert_conserved(cov, expected, allow_overlap_reasons=allow)
    return cov


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
        "retention_expired": {"records": len(oldest), "lost_samples": lost}
    }


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
