"""The collector test rig: a real sensor-server thread on a virtual clock, the collector in a thread or
a subprocess, and the conservation checker (every sample in S3 or in the gap ledger, nothing else).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_collector.config import CollectorConfig, load_config
from edge_collector.daemon import Collector
from factory_core.rawformat import (
    ChannelBlock,
    decode_batch,
    decode_gaps,
)
from factory_core.store import ObjectStore, S3Store
from tests.support.faultproxy import HttpFaultProxy, TcpFaultProxy

REPO = Path(__file__).resolve().parents[2]


PYTHON = sys.executable


T0_NS = 1767225600 * 10**9 + 3 * 86400 * 10**9  # 2026-01-04T00:00Z, a fixed virtual start


class TestClock:
    """Controllable virtual clock for the sensor server: speed x real time, pausable, jumpable."""

    __test__ = False

    def __init__(self, start_ns: int, speed: float) -> None:
        self.speed = speed
        self._lock = threading.Lock()
        self._base_ns = start_ns
        self._t0 = time.monotonic_ns()
        self._paused = False

    def __call__(self) -> int:
        with self._lock:
            if self._paused:
                return self._base_ns
            return self._base_ns + int((time.monotonic_ns() - self._t0) * self.speed)

    def pause(self) -> None:
        with self._lock:
            if not self._paused:
                self._base_ns += int((time.monotonic_ns() - self._t0) * self.speed)
                self._paused = True

    def resume(self) -> None:
        with self._lock:
            if self._paused:
                self._t0 = time.monotonic_ns()
                self._paused = False

    def jump(self, seconds: float) -> None:
        with self._lock:
            self._base_ns += int(seconds * 1e9)


class SensorThread:
    """factory_sim's SensorServer on its own event loop thread (so subprocess collectors can connect)."""

    def __init__(self, clock: TestClock, retention_s: float = 600.0, faults: Any = None, port: int = 0,
                 fast_rate_hz: float = 10.0, extra_channels: int = 0) -> None:  # fmt: skip
        from factory_sim.config import SimConfig
        from factory_sim.server import SensorServer

        self.cfg = SimConfig(
            retention_s=retention_s, fast_rate_hz=fast_rate_hz, extra_channels=extra_channels
        )
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self.server = SensorServer(self.cfg, port=port, clock=clock, faults=faults, tick_s=0.05)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.port = self.server.port

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` on the server loop (consistent snapshot of the rings)."""

        async def _c() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(_c(), self.loop).result(10)

    def heads(self) -> dict[int, tuple[int, int]]:
        """channel id -> (oldest retained seq, head). Call with the clock paused: the server's ticker
        (generation runs in its own worker thread) gets a few ticks to reach the clock's now first."""
        time.sleep(4 * self.server.tick_s + 0.05)
        return self.call(lambda: {cid: (r.oldest, r.head) for cid, r in self.server.rings.items()})

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class Coverage:
    """Per channel: seq intervals found in raw objects and in gap records."""

    data: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    gaps: dict[int, list[tuple[int, int, str]]] = field(default_factory=dict)
    objects: int = 0
    gap_objects: int = 0


def read_coverage(store: ObjectStore, check_values: Any = None) -> Coverage:
    """Decode every raw and gap object in the store; ``check_values(block)`` may verify content."""
    cov = Coverage()
    for key in store.list("raw/"):
        batch = decode_batch(store.get(key))
        cov.objects += 1
        for b in batch.blocks:
            cov.data.setdefault(b.channel_id, []).append((b.first_seq, b.first_seq + b.count))
            if check_values is not None:
                check_values(b)
    for key in store.list("gaps/"):
        cov.gap_objects += 1
        for g in decode_gaps(store.get(key)):
            cov.gaps.setdefault(g.channel_id, []).append((g.lost_from_seq, g.lost_to_seq, g.reason))
    return cov


def merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def assert_conserved(
    cov: Coverage, expected: dict[int, tuple[int, int]], allow_overlap_reasons: tuple[str, ...] = ()
) -> None:
    """Every channel's data ∪ gaps is exactly [start, end) (nothing missing, nothing extra), and no seq
    is both stored and recorded lost (except for reasons listed, e.g. sensor restarts)."""
    assert set(cov.data) | set(cov.gaps) >= set(expected), "channels missing entirely"
    for cid, (start, end) in expected.items():
        data = merge(cov.data.get(cid, []))
        lost = merge((a, b) for a, b, r in cov.gaps.get(cid, []) if r not in allow_overlap_reasons)
        union = merge(data + lost)
        assert union, f"channel {cid}: nothing stored"
        assert union[0][0] == start, f"channel {cid}: coverage starts at {union[0][0]}, expected {start}"
        assert len(union) == 1, f"channel {cid}: holes in coverage {union[:5]}"
        assert union[0][1] >= end, f"channel {cid}: coverage ends at {union[0][1]}, expected >= {end}"
        for a, b in lost:
            for c, d in data:
                assert b <= c or d <= a, f"channel {cid}: gap [{a},{b}) overlaps stored data [{c},{d})"


def sim_value_checker(sensor: SensorThread) -> Any:
    """Verify stored samples are byte-identical to what the simulator generates for those seqs."""
    from factory_sim.signals import generate

    chans = {c.id: c for c in sensor.server.channels}

    def check(b: ChannelBlock) -> None:
        t, v = generate(sensor.server.timeline, chans[b.channel_id], b.first_seq, b.first_seq + b.count)
        assert np.array_equal(t, b.t_ns), f"channel {b.channel_id}: timestamps differ at {b.first_seq}"
        assert np.asarray(v, "<f8").tobytes() == np.asarray(b.values, "<f8").tobytes()

    return check


def collector_env(**settings: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"EDGE_{k.upper()}": str(v) for k, v in settings.items()})
    env["PYTHONPATH"] = str(REPO)
    return env


def wait_until(pred: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


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

    def halt(self) -> None:
        """Stop without judging how the run ended (fixture teardown after a failed test)."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

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
        "collectors": [],
    }
    try:
        yield rig
    finally:  # a test that failed mid-way must not leave its collector polling into the next tests
        for col in rig["collectors"]:
            if col.alive:
                col.halt()
    tcp.close()
    http.close()
    rig["sensor"].stop()  # the restart test replaces the sensor


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
    rig["collectors"].append(col)
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
