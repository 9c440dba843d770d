"""Shared data for the factory_assets tests, and the ground-truth reconstruction tests that use it.

Test data comes from `factory-sim history` (the same raw format and key layout as the edge collector),
at a 1 Hz fast rate so a whole line-day stays small; the production table is compared with the
simulator's own schedule (LineTimeline.productions_between).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from factory_assets.production.compute import build_day, day_bounds, parquet_bytes
from factory_core.store import LocalDirStore
from factory_sim.channels import build_channels, seq_at, t_of_seq
from tests.support.assets import DAY, LINE, NEXT_DAY, SIM, _ns, copy_store, truth_for_day


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
    from factory_core.layout import gap_key
    from factory_core.rawformat import GapRecord, encode_gaps

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


OVER_TEMPERATURE_DAY = "2026-03-07"  # the simulator's schedule holds one over-temperature fault that day


def test_over_temperature_faults_show_time_above_the_alarm_limit(tmp_path: Path) -> None:
    """`*_s_above_limit` counts seconds above the machine's over-temperature alarm (setpoint-relative,
    factory_core.machine): non-zero on every over-temperature run although the die stays below the
    260 degC safety stop the feature used to count (and was therefore always 0)."""
    from factory_core.machine import SAFETY_RANGES, over_temperature_alarm
    from tests.support.assets import write_history

    write_history(str(tmp_path), OVER_TEMPERATURE_DAY, 2)
    frame = build_day(LocalDirStore(tmp_path), LINE, OVER_TEMPERATURE_DAY).frame
    hot = frame.filter(pl.col("fault") == "over_temperature")
    assert hot.height == sum(
        p.outcome.fault == "over_temperature" for p in truth_for_day(OVER_TEMPERATURE_DAY)
    )
    assert hot.height >= 1
    for row in hot.iter_rows(named=True):
        assert row["temp_die_max"] < SAFETY_RANGES["temperature"][1]
        assert row["temp_die_max"] > over_temperature_alarm("temp_die", row["sp_temperature"])
        assert row["temp_die_s_above_limit"] >= 5.0
        assert all(row[f"temp_zone{z}_s_above_limit"] > 0 for z in (1, 2, 3))
    clean = frame.filter(pl.col("fault") == "none")
    assert (clean["temp_die_s_above_limit"] > 0).mean() < 0.1  # a fault signal, not a constant
