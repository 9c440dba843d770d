"""kill -9 loop: the real `edge-collector run` process is SIGKILLed at random points >= 50 times.

Conservation must hold afterwards: every (channel, seq) the sensor produced since the first contact
is in S3 (values byte-identical) or in the gap ledger with exact bounds, nothing else; a final
SIGTERM exits 0 with cursors persisted.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from factory_core.outbox.spool import Spool
from factory_core.store import S3Store
from tests.support.collector import (
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

KILLS = 50


def _cursors(spool: Path) -> dict[int, int]:
    path = spool / "cursors.json"
    if not path.exists():
        return {}
    return {int(c): s for c, s in json.loads(path.read_text())["cursors"].items()}


def _moved_all(before: dict[int, int], now: dict[int, int]) -> bool:
    return all(now.get(c, -1) > s for c, s in before.items())


def _spawn(env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, "-m", "edge_collector.cli", "run"], env=env, cwd=REPO, stdout=log, stderr=log
    )


def test_sigkill_loop_conserves_every_sample(tmp_path: Path, s3_bucket: str, moto_server: str) -> None:
    rng = random.Random(20261125)
    clock = TestClock(T0_NS, 60.0)
    clock.pause()
    sensor = SensorThread(clock, retention_s=600.0)
    spool = tmp_path / "spool"
    env = collector_env(
        sensor_port=sensor.port,
        spool_dir=spool,
        store_url=f"s3://{s3_bucket}",
        s3_endpoint_url=moto_server,
        poll_interval_s=0.1,
        request_timeout_s=2,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.3,
        upload_retry_initial_s=0.05,
        upload_retry_max_s=0.3,
        metrics_port=-1,
        group_size=6,
        max_samples=3000,
        log_level="WARNING",
    )
    log = open(tmp_path / "collector.log", "ab")  # noqa: SIM115 - shared by every child process
    try:
        start = sensor.heads()
        proc = _spawn(env, log)
        wait_until(lambda: len(_cursors(spool)) == len(start), 30, "first contact")
        clock.resume()
        kill_points: list[float] = []
        progressed = 0  # cycles in which the killed process had moved cursors: kills hit real work
        for i in range(KILLS):
            before = _cursors(spool)
            started = time.monotonic()
            if i % 5 == 4:
                # Every fifth kill lands anywhere in start-up / recovery.
                time.sleep(rng.uniform(0.05, 1.0))
            else:
                # The others land while the collector is working: once every group has committed in
                # this life (no group starves across kills), at a random point within the next 300 ms
                # (spool writes, cursor writes and PUTs in flight).
                wait_until(lambda b=before: _moved_all(b, _cursors(spool)), 20, "collector progress", 0.005)
                time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
            kill_points.append(time.monotonic() - started)
            progressed += sum(_cursors(spool).values()) > sum(before.values())
            proc = _spawn(env, log)
        clock.pause()
        heads = {cid: h for cid, (_, h) in sensor.heads().items()}
        wait_until(
            lambda: (
                all(_cursors(spool).get(c, -1) >= h for c, h in heads.items())
                and not any(spool.glob("*.spl"))
            ),
            60,
            "catch-up and drain after the kill loop",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "SIGTERM must exit 0"
        assert len(kill_points) >= 50
        assert progressed >= KILLS * 3 // 4, (
            f"only {progressed} of {KILLS} kills interrupted a working collector"
        )
        # Cursors on disk agree with the (empty) spool and reach the sensor heads.
        assert Spool(spool).file_count == 0
        assert all(_cursors(spool)[c] >= h for c, h in heads.items())
        cov = read_coverage(S3Store(s3_bucket, endpoint_url=moto_server), sim_value_checker(sensor))
        assert_conserved(cov, {cid: (start[cid][0], heads[cid]) for cid in heads})
        assert cov.objects > KILLS  # the loop did real work between kills
        # Every outage here (start-up after a kill) is far shorter than the 600 s retention: no loss.
        assert cov.gaps == {}, f"unexpected gap records: {cov.gaps}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
        sensor.stop()
