"""A hanging S3 (connections accepted, never a reply): SIGTERM still exits within shutdown_timeout_s, and
sensor polling keeps pace even with more uploads in flight than the default thread pool has threads.

Before issue 14 the PUTs ran in the default executor: SIGTERM took ~60 s (asyncio.run waited for the
threads inside boto3) and with upload_concurrency >= the pool size the spool commits queued behind the
hung PUTs, so cursors stopped while the sensor advanced.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from factory_core.outbox.spool import Spool
from tests.support.collector import (
    PYTHON,
    REPO,
    T0_NS,
    SensorThread,
    TestClock,
    collector_env,
    cursors_on_disk,
    wait_until,
)

SHUTDOWN_TIMEOUT_S = 10.0


class HangingS3:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers (holds it open)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@contextlib.contextmanager
def rig(tmp_path: Path) -> Iterator[tuple[TestClock, SensorThread, HangingS3]]:
    clock = TestClock(T0_NS, 60.0)
    sensor = SensorThread(clock, retention_s=600.0)
    s3 = HangingS3()
    try:
        yield clock, sensor, s3
    finally:
        s3.close()
        sensor.stop()


def _env(tmp_path: Path, sensor: SensorThread, s3: HangingS3, **over: object) -> dict[str, str]:
    fake_aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    return fake_aws | collector_env(
        sensor_port=sensor.port, spool_dir=tmp_path / "spool", store_url="s3://hanging-bucket",
        s3_endpoint_url=f"http://127.0.0.1:{s3.port}", poll_interval_s=0.1, request_timeout_s=2,
        reconnect_initial_s=0.05, reconnect_max_s=0.3, metrics_port=-1, group_size=2, max_samples=3000,
        shutdown_timeout_s=SHUTDOWN_TIMEOUT_S, log_level="WARNING", **over,
    )  # fmt: skip


def test_sigterm_while_s3_hangs_exits_within_the_shutdown_timeout_and_loses_nothing(tmp_path: Path) -> None:
    with rig(tmp_path) as (_, sensor, s3):
        env = _env(tmp_path, sensor, s3, upload_concurrency=4)
        with open(tmp_path / "collector.log", "ab") as log:
            proc = subprocess.Popen([PYTHON, "-m", "edge_collector.cli", "run"], env=env, cwd=REPO,
                                    stdout=log, stderr=log)  # fmt: skip
            try:
                wait_until(lambda: len(s3.accepted) >= 4, 30, "uploads hanging in S3")
                time.sleep(1.0)  # the PUTs are well inside boto3's read timeout
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                rc = proc.wait(60)
                elapsed = time.monotonic() - started
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert rc == 0, (tmp_path / "collector.log").read_text()[-2000:]
        assert elapsed < SHUTDOWN_TIMEOUT_S, elapsed
    # Nothing lost: every committed sample is still in the spool (no PUT was ever confirmed).
    spool = Spool(tmp_path / "spool")
    held = {}
    for _, header in spool.headers():
        for cid, (_first, nxt) in header.ranges.items():
            held[cid] = max(held.get(cid, 0), nxt)
    assert held and held == {c: s for c, s in cursors_on_disk(tmp_path / "spool").items() if c in held}


def test_polling_keeps_pace_with_more_hanging_uploads_than_the_default_pool_has_threads(
    tmp_path: Path,
) -> None:
    default_pool = min(32, (os.cpu_count() or 1) + 4)
    with rig(tmp_path) as (clock, sensor, s3):
        env = _env(tmp_path, sensor, s3, upload_concurrency=default_pool + 4)
        with open(tmp_path / "collector.log", "ab") as log:
            proc = subprocess.Popen([PYTHON, "-m", "edge_collector.cli", "run"], env=env, cwd=REPO,
                                    stdout=log, stderr=log)  # fmt: skip
            try:
                wait_until(lambda: len(s3.accepted) >= default_pool + 4, 60, "every upload slot hanging")
                for _ in range(3):  # cursors keep up with the sensor for several seconds after that
                    time.sleep(2.0)
                    clock.pause()
                    heads = {cid: h for cid, (_, h) in sensor.heads().items()}
                    wait_until(
                        lambda h=heads: all(cursors_on_disk(tmp_path / "spool").get(c, -1) >= s for c, s in h.items()),
                        10, "cursors at the sensor heads",
                    )  # fmt: skip
                    clock.resume()
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
