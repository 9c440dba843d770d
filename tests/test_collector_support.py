"""Shared machinery for the collector tests (real sensor server thread, conservation checker).

Why in a test module: helpers live beside the tests that use them; the few tests here check the
checker itself, so a broken checker cannot make the durability tests pass vacuously.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_collector.rawformat import (
    ChannelBlock,
    GapRecord,
    RawBatch,
    decode_batch,
    decode_gaps,
    encode_batch,
    encode_gaps,
)
from edge_collector.store import LocalDirStore, ObjectStore

REPO = Path(__file__).resolve().parents[1]
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


# ------------------------------------------------------------------------- tests of the checker itself


def _block(cid: int, first: int, n: int) -> ChannelBlock:
    t = np.arange(first, first + n, dtype=np.int64) * 100_000_000 + T0_NS
    return ChannelBlock(cid, f"c{cid}", "u", 10.0, first, t, np.zeros(n))


def _store_with(
    tmp_path: Path, blocks: list[tuple[int, int, int]], gaps: list[tuple[int, int, int]]
) -> LocalDirStore:
    from edge_collector.rawformat import batch_key, gap_key

    store = LocalDirStore(tmp_path)
    for i, (cid, first, n) in enumerate(blocks):
        batch = RawBatch("L1", f"g{i}", (_block(cid, first, n),))
        store.put(batch_key(batch), encode_batch(batch))
    if gaps:
        recs = [
            GapRecord("L1", c, f"c{c}", a, b, T0_NS, T0_NS, T0_NS, "retention_expired") for c, a, b in gaps
        ]
        store.put(gap_key("L1", recs), encode_gaps("L1", recs))
    return store


def test_checker_accepts_exact_cover(tmp_path: Path) -> None:
    store = _store_with(tmp_path, [(1, 0, 10), (1, 15, 5)], [(1, 10, 15)])
    assert_conserved(read_coverage(store), {1: (0, 20)})


def test_checker_rejects_hole(tmp_path: Path) -> None:
    store = _store_with(tmp_path, [(1, 0, 10), (1, 15, 5)], [])
    with pytest.raises(AssertionError, match="holes"):
        assert_conserved(read_coverage(store), {1: (0, 20)})


def test_checker_rejects_gap_overlapping_data(tmp_path: Path) -> None:
    store = _store_with(tmp_path, [(1, 0, 20)], [(1, 5, 8)])
    with pytest.raises(AssertionError, match="overlaps"):
        assert_conserved(read_coverage(store), {1: (0, 20)})


def test_checker_rejects_wrong_start_and_short_end(tmp_path: Path) -> None:
    store = _store_with(tmp_path, [(1, 3, 10)], [])
    with pytest.raises(AssertionError, match="starts at"):
        assert_conserved(read_coverage(store), {1: (0, 13)})
    with pytest.raises(AssertionError, match="ends at"):
        assert_conserved(read_coverage(store), {1: (3, 20)})
