"""`edge-collector status --store` counts only samples truly missing (issue 14 #12).

Collectors before issue 14 recorded a sensor_seq_backwards gap again after every restart while the
sensor was behind: several records per channel over the same seqs, all of them in S3, and `status`
summed them into "lost_samples". The ledger is now read as a union of seq intervals per channel, a
re-issued (backwards) range is not a loss, and --verify-raw does not count what the raw objects hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_collector.status import merge_intervals, subtract_intervals
from factory_core.layout import batch_key, gap_key
from factory_core.rawformat import ChannelBlock, GapRecord, RawBatch, encode_batch, encode_gaps
from factory_core.store import LocalDirStore

REPO = Path(__file__).resolve().parents[2]
LINE = "L1"
T0 = 1_780_000_000 * 10**9  # 2026-05-28, 10 Hz channels
PERIOD = 10**8


def _gap(cid: int, lo: int, hi: int, reason: str) -> GapRecord:
    return GapRecord(
        LINE, cid, f"ch{cid}", lo, hi, T0 + lo * PERIOD, T0 + hi * PERIOD, T0 + hi * PERIOD, reason
    )


def _put_gaps(store: LocalDirStore, gaps: list[GapRecord]) -> None:
    store.put(gap_key(LINE, gaps), encode_gaps(LINE, gaps))


def _put_raw(store: LocalDirStore, cid: int, lo: int, hi: int) -> None:
    n = hi - lo
    block = ChannelBlock(cid, f"ch{cid}", "", 10.0, lo, T0 + np.arange(lo, hi, dtype=np.int64) * PERIOD,
                         np.zeros(n))  # fmt: skip
    batch = RawBatch(LINE, "g00", (block,))
    store.put(batch_key(batch), encode_batch(batch))


def _status(tmp_path: Path, *extra: str) -> dict:
    env = {"EDGE_SPOOL_DIR": str(tmp_path / "spool"), "EDGE_STORE_URL": str(tmp_path / "store"),
           "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "edge_collector.cli", "status", "--store", *extra],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)["ledger"]["store"]


def test_interval_union_and_difference() -> None:
    assert merge_intervals([(5, 9), (0, 3), (3, 4), (8, 12), (20, 20)]) == [(0, 4), (5, 12)]
    assert subtract_intervals([(0, 10), (20, 30)], [(2, 4), (8, 22), (29, 40)]) == [(0, 2), (4, 8), (22, 29)]
    assert subtract_intervals([(0, 10)], []) == [(0, 10)]


def test_status_counts_overlapping_legacy_records_once_and_backwards_ranges_as_not_lost(
    tmp_path: Path,
) -> None:
    store = LocalDirStore(tmp_path / "store")
    # Three restarts of an old collector while the sensor was behind: three overlapping backwards
    # records per channel over seqs that are all stored.
    for lo in (1000, 1100, 1200):
        _put_gaps(
            store, [_gap(1, lo, 1500, "sensor_seq_backwards"), _gap(2, lo, 1500, "sensor_seq_backwards")]
        )
    for cid in (1, 2):
        _put_raw(store, cid, 0, 1500)
    # A real loss recorded twice (overlapping) by an old version: 300 samples missing, not 400.
    _put_gaps(store, [_gap(1, 2000, 2200, "retention_expired")])
    _put_gaps(store, [_gap(1, 2100, 2300, "retention_expired")])
    ledger = _status(tmp_path)
    assert ledger["gap_objects"] == 5
    assert ledger["by_reason"] == {
        "retention_expired": {"records": 2, "samples": 300, "lost_samples": 300},
        "sensor_seq_backwards": {"records": 6, "samples": 2 * 500, "lost_samples": 0},
    }
    assert ledger["lost_samples"] == 300
    assert ledger["lost_by_channel"] == {"L1/1/ch1": 300}


def test_status_verify_raw_does_not_count_lost_samples_that_are_stored(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path / "store")
    _put_gaps(store, [_gap(1, 2000, 2300, "retention_expired"), _gap(3, 50, 60, "sensor_seq_jump")])
    _put_raw(store, 1, 2250, 2400)  # 50 of the recorded seqs are in the store after all
    plain = _status(tmp_path)
    assert plain["lost_samples"] == 310 and "verified_raw" not in plain
    verified = _status(tmp_path, "--verify-raw")
    assert verified["lost_samples"] == 260
    assert verified["by_reason"]["retention_expired"] == {"records": 1, "samples": 300, "lost_samples": 250}
    assert verified["verified_raw"]["lost_but_stored"] == 50
    assert verified["lost_by_channel"] == {"L1/1/ch1": 250, "L1/3/ch3": 10}
