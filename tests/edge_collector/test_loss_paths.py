"""The collector's loss paths that had no test: a sensor seq jump, corrupt spool files, a failing fsync.

Real parts throughout: the simulator's sensor server over TCP (with a firmware anomaly added by a
subclass for the seq jump), moto's S3 over HTTP, real spool files damaged on disk, and the real daemon
(in-process, so a failing fsync can be injected through its ``fsync`` seam: an OS-level failure that
cannot be produced otherwise without root). Every daemon test ends with the conservation check: every
(channel, seq) produced is in S3 (values byte-identical to the simulator) or in a gap record with exact
bounds, nothing else.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_collector.config import CollectorConfig
from edge_collector.cursors import CursorStore
from edge_collector.daemon import Collector
from edge_collector.ledger import REASON_SPOOL_CORRUPT
from edge_collector.metrics import CollectorMetrics, CollectorUploadObserver
from factory_core.layout import batch_key
from factory_core.outbox.spool import CORRUPT_DIR, MAGIC, Spool, SpoolHeader, SpoolWriteError, read_header
from factory_core.outbox.uploader import Uploader
from factory_core.protocol import MAX_PAYLOAD, READ_CHANNEL_HEADER_SIZE, SAMPLE_SIZE, RecordRead
from factory_core.protocol import encode_read_response_frame as encode_reply
from factory_core.rawformat import ChannelBlock, RawBatch, decode_gaps, encode_batch
from factory_core.store import LocalDirStore
from factory_sim.server import SensorServer
from factory_sim.signals import generate
from tests.support.collector import (
    T0_NS,
    CollectorThread,
    Coverage,
    SensorThread,
    TestClock,
    check,
    collector_rig,
    cursors_on_disk,
    finish,
    make_cfg,
    merge,
    read_coverage,
    sim_value_checker,
    start,
    wait_until,
)

SPEED = 60.0
RETENTION_S = 240.0  # 4 s real at 60x


# ------------------------------------------------------------------------------- sensor with seq holes


class SkippingSensorServer(SensorServer):
    """The simulator with a firmware anomaly: the seqs ``holes[cid] = [lo, hi)`` are skipped, no GAP flag.

    The sensor's visible head stops at ``lo`` until the ring has produced past ``hi``; then it jumps to
    the ring head. A READ from before ``lo`` ends at ``lo``; a READ from inside the hole is answered,
    status OK, with the samples from ``hi`` on. Without holes every reply is the simulator's own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holes: dict[int, tuple[int, int]] = {}
        self.jumps_served = 0

    def _read_reply(self, req: Any, request_id: int) -> bytes | bytearray:
        if not self.holes:
            return super()._read_reply(req, request_id)
        n = len(req.channels)
        cap = min(req.max_samples, (MAX_PAYLOAD - 2 - n * READ_CHANNEL_HEADER_SIZE) // (n * SAMPLE_SIZE))
        reads = []
        for cid, since in req.channels:
            ring = self.rings[cid]
            lo, hi = self.holes.get(cid, (0, 0))
            past_hole = ring.head > hi
            head = ring.head if past_hole or ring.head <= lo else lo
            if since < lo:
                gap, first, chunks = ring.read(since, min(cap, max(0, min(head, lo) - since)))
            elif since < hi and past_hole:
                self.jumps_served += 1
                gap, first, chunks = ring.read(hi, cap)
            elif since < hi:
                gap, first, chunks = False, since, ()
            else:
                gap, first, chunks = ring.read(since, cap)
            reads.append(RecordRead(cid, gap, since, first, head, chunks))
        return encode_reply(request_id, reads)


class SkippingSensorThread(SensorThread):
    """tests.test_collector_support.SensorThread serving a SkippingSensorServer."""

    def __init__(self, clock: TestClock, retention_s: float) -> None:
        from factory_sim.config import SimConfig

        self.cfg = SimConfig(retention_s=retention_s)
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self.server: SkippingSensorServer = SkippingSensorServer(self.cfg, clock=clock, tick_s=0.05)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.port = self.server.port


@pytest.fixture
def rig(tmp_path: Path, s3_bucket: str, moto_server: str) -> Iterator[dict[str, Any]]:
    """the collector rig (tests/support/collector.py) with a sensor that skips sequence numbers."""
    with collector_rig(tmp_path, s3_bucket, moto_server, SkippingSensorThread) as r:
        yield r


def exact_t_ns(sensor: SensorThread, cid: int, seq: int) -> int:
    """The simulator's timestamp of (cid, seq) (also valid for seqs skipped by a hole)."""
    chan = next(c for c in sensor.server.channels if c.id == cid)
    return int(generate(sensor.server.timeline, chan, seq, seq + 1)[0][0])


# -------------------------------------------------------------------------------------- 1. seq jump


def test_sensor_seq_jump_records_exact_gap_and_collection_continues(rig: dict[str, Any]) -> None:
    sensor: SkippingSensorThread = rig["sensor"]
    col = start(rig)
    wait_until(lambda: col.metric("edge_samples_collected_total") > 0, 20, "first batches")
    rig["clock"].pause()
    heads = {cid: h for cid, (_, h) in sensor.heads().items()}
    wait_until(
        lambda: all(cursors_on_disk(rig["spool"]).get(c) == h for c, h in heads.items()), 20, "caught up"
    )
    # Each channel will skip 20 s worth of seqs starting 5 s after the current head (1 Hz and 10 Hz).
    rates = {c.id: c.rate_hz for c in sensor.server.channels}
    holes = {cid: (h + int(5 * rates[cid]), h + int(25 * rates[cid])) for cid, h in heads.items()}
    sensor.call(lambda: sensor.server.holes.update(holes))
    rig["clock"].resume()
    wait_until(lambda: col.metric('edge_sensor_anomalies_total{kind="seq_jump"}') >= len(holes), 20, "jumps")
    # Collection goes on past the hole: 2 s real = 120 virtual s after every jump.
    after = {cid: hi + int(60 * rates[cid]) for cid, (_, hi) in holes.items()}
    wait_until(
        lambda: all(cursors_on_disk(rig["spool"]).get(c, 0) >= s for c, s in after.items()), 20, "more"
    )
    assert col.metric('edge_gaps_total{reason="sensor_seq_jump"}') == len(holes)
    lost = sum(b - a for a, b in holes.values())
    assert col.metric('edge_gap_samples_total{reason="sensor_seq_jump"}') == lost
    final = finish(rig, col)
    assert sensor.server.jumps_served == len(
        holes
    )  # one jump answered per channel: the anomaly really happened
    cov = check(rig, final)  # conservation: data ∪ gaps == [first contact, head) exactly, no overlap
    assert {cid: gs for cid, gs in cov.gaps.items()} == {
        cid: [(lo, hi, "sensor_seq_jump")] for cid, (lo, hi) in holes.items()
    }
    for cid, (_lo, hi) in holes.items():
        assert max(b for _, b in cov.data[cid]) == final[cid] > hi  # samples after the hole were stored
    # The gap records' timestamps (derived from the channel rate) are the simulator's own.
    for key in rig["store"].list("gaps/"):
        for g in decode_gaps(rig["store"].get(key)):
            assert g.lost_from_ns == exact_t_ns(sensor, g.channel_id, g.lost_from_seq), g
            assert g.lost_to_ns == exact_t_ns(sensor, g.channel_id, g.lost_to_seq), g


# ------------------------------------------------------------------------- 2. corrupt spool files


def _spool_batch(spool: Spool, cid: int, first: int, n: int) -> tuple[SpoolHeader, bytes]:
    t = T0_NS + np.arange(first, first + n, dtype=np.int64) * 100_000_000
    batch = RawBatch("L1", "g00", (ChannelBlock(cid, f"ch{cid}", "u", 10.0, first, t, np.cos(t / 1e9)),))
    header = SpoolHeader("batch", batch_key(batch), "L1", {cid: (first, first + n)}, n, T0_NS)
    payload = encode_batch(batch)
    spool.write(header, payload)
    return header, payload


def _damage(path: Path, how: str) -> bytes:
    """Damage a spool file on disk the way a torn write / bad sector / stray tool would; return its bytes."""
    data = bytearray(path.read_bytes())
    (hlen,) = (int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "big"),)
    payload_at = len(MAGIC) + 4 + hlen
    if how == "garbage":  # not a spool file at all
        data = bytearray(os.urandom(len(data)))
        data[:2] = b"\x00\xff"
    elif how == "truncated_header":  # torn write inside the header
        data = data[: len(MAGIC) + 4 + hlen // 2]
    elif how == "bad_header_json":  # magic and length fine, header bytes not JSON
        data[len(MAGIC) + 4 : payload_at] = b"x" * hlen
    elif how == "payload_flip":  # one flipped bit in the payload: only the CRC notices
        data[payload_at + (len(data) - payload_at) // 2] ^= 0x10
    elif how == "truncated_payload":  # torn write inside the payload
        data = data[: payload_at + (len(data) - payload_at) // 2]
    elif how == "bad_crc":
        data[-4:] = (zlib.crc32(bytes(data[:-4])) ^ 1).to_bytes(4, "big")
    else:
        raise ValueError(how)
    path.write_bytes(bytes(data))
    return bytes(data)


HEADER_DAMAGE = ("garbage", "truncated_header", "bad_header_json")
CRC_DAMAGE = ("payload_flip", "truncated_payload", "bad_crc")


def test_spool_scan_quarantines_unreadable_headers_and_keeps_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    good = [_spool_batch(spool, 1, i * 100, 100) for i in range(3)]
    for i, _ in enumerate(HEADER_DAMAGE):
        _spool_batch(spool, 2, i * 100, 100)
    crc = [_spool_batch(spool, 3, i * 100, 100) for i in range(len(CRC_DAMAGE))]
    files = {e.seqno: e.path for e in spool.entries()}
    damaged = {files[3 + i].name: _damage(files[3 + i], how) for i, how in enumerate(HEADER_DAMAGE)}
    crc_damaged = {files[6 + i].name: _damage(files[6 + i], how) for i, how in enumerate(CRC_DAMAGE)}

    with caplog.at_level(logging.ERROR, logger="factory_core.outbox.spool"):
        again = Spool(tmp_path)
        cursors = CursorStore(tmp_path).load_with_spool(again)
    # Unreadable headers: moved aside byte-for-byte (never deleted), logged, counted; the rest stays.
    corrupt = tmp_path / CORRUPT_DIR
    assert {p.name: p.read_bytes() for p in corrupt.iterdir()} == damaged
    assert again.quarantined == len(HEADER_DAMAGE)
    logged = {
        r.__dict__["fields"]["file"]
        for r in caplog.records
        if r.__dict__.get("fields", {}).get("event") == "spool_corrupt"
    }
    assert logged == set(damaged)
    assert [e.path.name for e in again.entries()] == [files[i].name for i in (0, 1, 2, 6, 7, 8)]
    assert again.total_bytes == sum(e.path.stat().st_size for e in again.entries())
    # Cursors come from the readable headers only (channel 2's files say nothing any more).
    assert cursors == {1: 300, 3: 300}
    assert {again.entries()[i].path.name for i in (3, 4, 5)} == set(crc_damaged)
    assert [h for h, _ in good] == [read_header(e.path) for e in again.entries()[:3]]
    assert len(crc) == 3


def test_uploader_quarantines_crc_failures_reports_their_ranges_and_uploads_the_rest(tmp_path: Path) -> None:
    root, objects = tmp_path / "spool", tmp_path / "objects"
    spool = Spool(root)
    written = [_spool_batch(spool, 4, i * 50, 50) for i in range(3 + len(CRC_DAMAGE))]
    entries = spool.entries()
    damaged = {
        entries[1 + i].path.name: _damage(entries[1 + i].path, how) for i, how in enumerate(CRC_DAMAGE)
    }
    reported: list[SpoolHeader] = []
    metrics = CollectorMetrics()
    store = LocalDirStore(objects)
    up = Uploader(
        spool,
        store,
        CollectorUploadObserver(metrics),
        concurrency=2,
        retry_initial_s=0.01,
        on_corrupt=reported.append,
    )

    async def drain() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(up.run(stop))
        up.release_all_existing()
        async with asyncio.timeout(20):
            while spool.file_count:  # noqa: ASYNC110 - the spool offers no event to wait on
                await asyncio.sleep(0.02)
        stop.set()
        await task

    asyncio.run(drain())
    # The intact files are in the store byte-for-byte, the damaged ones are not (and still exist aside).
    intact = [written[0], *written[1 + len(CRC_DAMAGE) :]]
    assert sorted(store.list("raw/")) == sorted(h.key for h, _ in intact)
    for header, payload in intact:
        assert store.get(header.key) == payload
    assert {p.name: p.read_bytes() for p in (root / CORRUPT_DIR).iterdir()} == damaged
    assert list(root.glob("*.spl")) == []
    assert metrics.spool_corrupt._value.get() == len(CRC_DAMAGE)
    assert metrics.uploads.labels("batch")._value.get() == len(intact)
    # Their exact seq ranges are handed over for the gap ledger (the header survived the damage).
    assert sorted(h.ranges[4] for h in reported) == [(50, 100), (100, 150), (150, 200)]


def coverage_holes(cov: Coverage, cid: int, start: int, end: int) -> list[tuple[int, int]]:
    """Seq ranges of [start, end) neither stored nor recorded lost; asserts no gap overlaps stored data."""
    data = merge(cov.data.get(cid, []))
    lost = merge((a, b) for a, b, _ in cov.gaps.get(cid, []))
    for a, b in lost:
        assert all(b <= c or d <= a for c, d in data), f"channel {cid}: gap [{a},{b}) overlaps data"
    holes, pos = [], start
    for a, b in merge(data + lost):
        assert a >= start, f"channel {cid}: coverage before first contact"
        if a > pos:
            holes.append((pos, a))
        pos = max(pos, b)
    if pos < end:
        holes.append((pos, end))
    return holes


def test_daemon_restart_quarantines_corrupt_spool_files_and_records_the_loss(rig: dict[str, Any]) -> None:
    rig["http"].down = True  # S3 unreachable: batches stay in the spool
    col = start(rig)
    wait_until(lambda: len(list(rig["spool"].glob("*-b.spl"))) >= 8, 20, "spooled batches")
    rig["clock"].pause()
    col.stop()
    files = sorted(rig["spool"].glob("*-b.spl"))
    crc_victim, header_victim = files[2], files[5]
    crc_header, lost_header = read_header(crc_victim), read_header(header_victim)
    damaged = {
        crc_victim.name: _damage(crc_victim, "payload_flip"),
        header_victim.name: _damage(header_victim, "garbage"),
    }
    rig["http"].down = False
    col = start(rig)
    wait_until(lambda: col.metric("edge_spool_corrupt_files_total") == 2, 20, "both files quarantined")
    # The CRC victim is counted when quarantined, its gaps a moment later by the uploader's thread.
    corrupt_gaps = f'edge_gaps_total{{reason="{REASON_SPOOL_CORRUPT}"}}'
    wait_until(
        lambda: col.metric(corrupt_gaps) >= len(crc_header.ranges), 20, "the CRC victim's gaps recorded"
    )
    assert col.metric(corrupt_gaps) == len(crc_header.ranges)
    final = finish(rig, col)
    # Moved aside byte-for-byte, never uploaded.
    assert {p.name: p.read_bytes() for p in (rig["spool"] / CORRUPT_DIR).iterdir()} == damaged
    keys = set(rig["store"].list("raw/"))
    assert crc_header.key not in keys and lost_header.key not in keys
    cov = read_coverage(rig["store"], sim_value_checker(rig["sensor"]))
    # The CRC victim's exact ranges are in the ledger; the file whose header was destroyed cannot name
    # its ranges: those (and only those) are missing, counted and logged, the file kept for a human.
    for cid, (a, b) in crc_header.ranges.items():
        assert (a, b, REASON_SPOOL_CORRUPT) in cov.gaps[cid]
    assert {c: [g for g in gs if g[2] != REASON_SPOOL_CORRUPT] for c, gs in cov.gaps.items()} == {
        c: [] for c in cov.gaps
    }
    assert sum(len(gs) for gs in cov.gaps.values()) == len(crc_header.ranges)
    for cid in final:
        expected = [lost_header.ranges[cid]] if cid in lost_header.ranges else []
        assert coverage_holes(cov, cid, rig["start"][cid][0], final[cid]) == expected, cid


# ----------------------------------------------------------------------------------- 3. fsync failure


class FlakyFsync:
    """os.fsync that fails with ENOSPC on spool data files while ``fail`` is set (directories pass)."""

    def __init__(self) -> None:
        self.fail = False
        self.failures = 0

    def __call__(self, fd: int) -> None:
        if self.fail and not os.path.isdir(f"/proc/self/fd/{fd}"):
            self.failures += 1
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        os.fsync(fd)


class FsyncCollectorThread(CollectorThread):
    """CollectorThread whose Collector gets ``fsync`` (the spool's only fsync seam)."""

    def __init__(self, cfg: CollectorConfig, fsync: Callable[[int], None]) -> None:
        self.collector = Collector(cfg, fsync=fsync)
        self.rc = None
        self.error = None
        self._loop = asyncio.new_event_loop()
        self._stop = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(10)


def durable_ends(rig: dict[str, Any]) -> dict[int, int]:
    """Per channel, the end of what is durable: spool file headers and objects already in S3."""
    ends: dict[int, int] = {}
    for path in rig["spool"].glob("*.spl"):
        for cid, (_, nxt) in read_header(path).ranges.items():
            ends[cid] = max(ends.get(cid, 0), nxt)
    cov = read_coverage(rig["store"])
    for cid, ranges in [*cov.data.items(), *((c, [(a, b) for a, b, _ in g]) for c, g in cov.gaps.items())]:
        ends[cid] = max([ends.get(cid, 0), *(b for _, b in ranges)])
    return ends


@pytest.mark.parametrize("outage_s", [0.0, RETENTION_S + 60], ids=["within-retention", "beyond-retention"])
def test_spool_fsync_failure_stops_daemon_without_moving_cursors_then_recovers(
    rig: dict[str, Any], outage_s: float
) -> None:
    fsync = FlakyFsync()
    col = FsyncCollectorThread(make_cfg(rig), fsync)
    wait_until(lambda: len(cursors_on_disk(rig["spool"])) == len(rig["start"]), 20, "cursor init")
    rig["clock"].resume()
    wait_until(lambda: col.metric("edge_batches_spooled_total") >= 6, 20, "batches spooled")
    fsync.fail = True  # the disk is full: every new spool file fails its fsync
    wait_until(lambda: not col.alive, 20, "the daemon stopping on SpoolWriteError")
    rig["clock"].pause()
    assert isinstance(col.error, SpoolWriteError), col.error  # `edge-collector run` exits 1 on this
    assert fsync.failures >= 3
    assert [p.name for p in rig["spool"].iterdir() if p.name.startswith(".tmp-")] == []
    # Cursors never passed what is durable (spool files + S3), and data was left on the sensor.
    at_fail = cursors_on_disk(rig["spool"])
    assert at_fail == durable_ends(rig)
    heads = rig["sensor"].heads()
    assert any(heads[c][1] > s for c, s in at_fail.items()), "the failed batch must not be acknowledged"

    rig["clock"].jump(outage_s)
    oldest = {cid: o for cid, (o, _) in rig["sensor"].heads().items()}
    fsync.fail = False  # space freed: the same daemon configuration starts again
    col = FsyncCollectorThread(make_cfg(rig), fsync)
    if outage_s:
        wait_until(lambda: col.metric("edge_gaps_total") >= len(oldest), 20, "gap records")
    rig["clock"].resume()
    final = finish(rig, col)
    cov = check(rig, final)
    if outage_s:
        assert cov.gaps == {cid: [(at_fail[cid], oldest[cid], "retention_expired")] for cid in final}
    else:
        assert cov.gaps == {}, f"a failed fsync within retention must cost nothing: {cov.gaps}"
