"""Shared data for the factory_assets tests, and the ground-truth reconstruction tests that use it.

Test data comes from `factory-sim history` (the same raw format and key layout as the edge collector),
at a 1 Hz fast rate so a whole line-day stays small; the production table is compared with the
simulator's own schedule (LineTimeline.productions_between).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edge_collector.rawformat import ChannelBlock, RawBatch, batch_key, encode_batch
from edge_collector.store import LocalDirStore, ObjectStore
from factory_assets.production.compute import build_day, day_bounds, parquet_bytes
from factory_sim import history
from factory_sim.channels import build_channels, seq_at, t_of_seq
from factory_sim.config import SimConfig
from factory_sim.schedule import LineTimeline, Production

LINE = "L1"
DAY = "2026-03-02"
NEXT_DAY = "2026-03-03"
FAST_HZ = 1.0
SIM = SimConfig(lines=(LINE,), fast_rate_hz=FAST_HZ)


def write_history(store_url: str, start: str, days: int, endpoint_url: str | None = None) -> None:
    """`factory-sim history` in-process (the console script's own entry point)."""
    argv = ["--days", str(days), "--start-date", start, "--lines", LINE, "--store", store_url,
            "--fast-rate-hz", str(FAST_HZ), "--object-seconds", "3600", "--workers", "1", "--no-progress"]  # fmt: skip
    if endpoint_url:
        argv += ["--endpoint-url", endpoint_url]
    assert history.cli(argv) == 0


def copy_store(src: ObjectStore, dst: ObjectStore, prefix: str = "") -> int:
    n = 0
    for key in src.list(prefix):
        dst.put(key, src.get(key))
        n += 1
    return n


def put_small_object(
    store: ObjectStore, line: str, t0_ns: int, seconds: int = 10, group: str = "tiny"
) -> str:
    """A tiny valid raw object (production_id channel only) starting at t0; returns its key."""
    ch = next(c for c in build_channels(SIM) if c.name == "production_id")
    s0 = seq_at(ch, t0_ns)
    t = np.array([t_of_seq(ch, s0 + k) for k in range(seconds)], dtype=np.int64)
    block = ChannelBlock(ch.id, ch.name, ch.unit, ch.rate_hz, s0, t, np.zeros(seconds))
    batch = RawBatch(line, group, (block,))
    key = batch_key(batch)
    store.put(key, encode_batch(batch))
    return key


def truth_for_day(date: str) -> list[Production]:
    t0, t1 = day_bounds(date)
    timeline = LineTimeline(SIM, LINE)
    return [p for p in timeline.productions_between(t0 - 86_400 * 10**9, t1) if t0 <= p.start_ns < t1]


def _ns(value: dt.datetime) -> int:
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


@pytest.fixture(scope="session")
def history_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days (DAY and NEXT_DAY) of line L1 written by factory-sim history into a local directory."""
    root = tmp_path_factory.mktemp("history")
    write_history(str(root), DAY, 2)
    return root


@pytest.fixture
def local_store(history_dir: Path, tmp_path: Path) -> Iterator[LocalDirStore]:
    """A private copy of the history (tests may add, corrupt or quarantine objects)."""
    root = tmp_path / "objects"
    shutil.copytree(history_dir, root)
    yield LocalDirStore(root)


def test_day_matches_simulator_ground_truth_exactly(history_dir: Path) -> None:
    """Ids, start/end (fast grid), lot, params, set_by, QA, faults: equal to the simulator's schedule,
    including the night-shift production that straddles midnight and runs crossing object boundaries."""
    day = build_day(LocalDirStore(history_dir), LINE, DAY)
    truth = truth_for_day(DAY)
    frame = day.frame
    assert frame["production_id"].to_list() == [p.production_id for p in truth]
    fast = next(c for c in build_channels(SIM) if c.name == "machine_state")
    _, t1 = day_bounds(DAY)
    assert any(p.end_ns > t1 for p in truth), "test data must contain a production straddling midnight"
    hour = 3600 * 10**9
    assert any(p.start_ns // hour != p.end_ns // hour for p in truth), "and runs crossing an object boundary"
    for p, row in zip(truth, frame.iter_rows(named=True), strict=True):
        assert _ns(row["start"]) == t_of_seq(fast, seq_at(fast, p.start_ns))
        assert _ns(row["end"]) == t_of_seq(fast, seq_at(fast, p.end_ns))
        assert (row["lot_moisture"], row["lot_hardness"], row["lot_density"], row["lot_impurity"]) == (
            p.lot.moisture,
            p.lot.hardness,
            p.lot.density,
            p.lot.impurity,
        )
        assert (row["sp_temperature"], row["sp_feed_rate"], row["sp_pressure"]) == p.params.as_tuple()
        assert row["set_by_code"] == p.set_by_code
        assert row["qa_quality"] == p.outcome.quality
        assert row["fault_code"] == p.fault_code
        assert row["energy_kwh"] == pytest.approx(p.outcome.energy_kwh, rel=0.05, abs=0.01)
    assert day.complete


def test_straddling_production_needs_next_day(tmp_path: Path, history_dir: Path) -> None:
    """Without the next day's objects the midnight production (and its QA) cannot be completed: it is
    left out rather than truncated; with them it appears with its true end."""
    store = LocalDirStore(tmp_path / "s")
    copy_store(LocalDirStore(history_dir), store, f"raw/line={LINE}/date={DAY}/")
    partial = build_day(store, LINE, DAY).frame
    full = build_day(LocalDirStore(history_dir), LINE, DAY).frame
    _, t1 = day_bounds(DAY)
    straddler = [p for p in truth_for_day(DAY) if p.end_ns > t1]
    assert straddler and straddler[0].production_id not in partial["production_id"].to_list()
    assert straddler[0].production_id in full["production_id"].to_list()
    # A day whose first production started the day before does not claim it.
    next_day = build_day(LocalDirStore(history_dir), LINE, NEXT_DAY).frame
    assert straddler[0].production_id not in next_day["production_id"].to_list()


def test_parquet_is_byte_identical_and_ordered(history_dir: Path) -> None:
    a = parquet_bytes(build_day(LocalDirStore(history_dir), LINE, DAY).frame)
    b = parquet_bytes(build_day(LocalDirStore(history_dir), LINE, DAY).frame)
    assert a == b
    frame = pl.read_parquet(a)
    assert frame["production_id"].is_sorted()


def test_missing_hour_is_incomplete_until_recorded_as_gap(local_store: LocalDirStore) -> None:
    from edge_collector.rawformat import GapRecord, encode_gaps, gap_key

    hour_keys = list(local_store.list(f"raw/line={LINE}/date={DAY}/hour=05/"))
    assert hour_keys
    for key in hour_keys:
        local_store.delete(key)
    day = build_day(local_store, LINE, DAY)
    assert not day.complete
    assert set(day.missing_s.values()) == {3600.0}
    t0, _ = day_bounds(DAY)
    lost_from = t0 + 5 * 3600 * 10**9
    gaps = []
    for ch in build_channels(SIM):
        s0, s1 = seq_at(ch, lost_from), seq_at(ch, lost_from + 3600 * 10**9)
        gaps.append(
            GapRecord(LINE, ch.id, ch.name, s0, s1, t_of_seq(ch, s0), t_of_seq(ch, s1), lost_from, "test")
        )
    local_store.put(gap_key(LINE, gaps), encode_gaps(LINE, gaps))
    assert build_day(local_store, LINE, DAY).complete
