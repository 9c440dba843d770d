"""Sensor signals: catalogue, determinism, range-split invariance, lag dynamics, faults, reconstruction."""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
import pytest

from factory_sim.channels import FAST_CHANNELS, SLOW_CHANNELS, Channel, build_channels, seq_at, t_of_seq
from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.craftsmen import shift_index_at, shift_start_ns
from factory_sim.schedule import LineTimeline, Production
from factory_sim.signals import LAGS, STANDBY_TEMP, clean_values, generate, noise_std

S = NS_PER_S
DAY = 86_400 * S
CFG = SimConfig(seed=42, extra_channels=3)
CHANNELS = {c.name: c for c in build_channels(CFG)}


def _digest(cfg: SimConfig, t0: int, t1: int) -> str:
    tl = LineTimeline(cfg, "L1")
    h = hashlib.sha256()
    for ch in build_channels(cfg):
        t, v = generate(tl, ch, seq_at(ch, t0), seq_at(ch, t1))
        h.update(ch.name.encode())
        h.update(t.tobytes())
        h.update(v.tobytes())
    return h.hexdigest()


def test_catalogue_has_20_fast_channels_at_10hz_with_unique_ids() -> None:
    chans = build_channels(CFG)
    fast = [c for c in chans if c.rate_hz == 10.0]
    assert len(fast) >= 20 and all(c.period_ns == 100_000_000 for c in fast)
    assert [c.id for c in chans] == list(range(1, len(chans) + 1))
    assert len({c.name for c in chans}) == len(chans)
    names = {c.name for c in chans}
    assert {n for n, _ in FAST_CHANNELS} | {n for n, _ in SLOW_CHANNELS} <= names
    assert {"vib_band_01", "vib_band_02", "vib_band_03"} <= names
    assert build_channels(SimConfig(extra_channels=68))[:32] == build_channels(SimConfig())
    assert len(build_channels(SimConfig(extra_channels=68))) == 100
    with pytest.raises(ValueError, match="rate_hz"):
        Channel(1, "x", "u", 3.0)


def test_seq_and_time_are_exact_inverses() -> None:
    ch = CHANNELS["temp_zone1"]
    for seq in (0, 1, 7, 864_000, 10**10 + 3):
        assert seq_at(ch, t_of_seq(ch, seq)) == seq
        assert seq_at(ch, t_of_seq(ch, seq) - 1) == seq
        assert seq_at(ch, t_of_seq(ch, seq) + 1) == seq + 1
    assert t_of_seq(ch, 0) == ORIGIN_NS


def test_same_seed_same_bytes_different_seed_differs() -> None:
    t0 = ORIGIN_NS + DAY + 5 * 3600 * S + 40 * 60 * S  # 05:40, across the 06:00 shift change
    t1 = t0 + 40 * 60 * S
    assert _digest(CFG, t0, t1) == _digest(CFG, t0, t1)
    assert _digest(CFG, t0, t1) != _digest(SimConfig(seed=43, extra_channels=3), t0, t1)


@pytest.mark.parametrize(
    ("start", "split_offsets_s"),
    [
        (ORIGIN_NS + 2 * DAY - 1800 * S, [1, 1799.9, 1800, 1800.1, 3599.3]),  # across midnight
        (ORIGIN_NS + 2 * DAY + 6 * 3600 * S - 900 * S, [0.1, 899.9, 900, 1234.5]),  # across a shift change
    ],
)
def test_range_split_anywhere_equals_the_whole(start: int, split_offsets_s: list[float]) -> None:
    end = start + 3600 * S
    rng = np.random.default_rng(0)
    offsets = split_offsets_s + list(rng.uniform(0, 3600, 3))
    chans = build_channels(CFG)
    whole = {
        ch.name: generate(LineTimeline(CFG, "L1"), ch, seq_at(ch, start), seq_at(ch, end)) for ch in chans
    }
    for off in offsets:
        first, second = LineTimeline(CFG, "L1"), LineTimeline(CFG, "L1")  # independent callers
        for ch in chans:
            a, b, c = seq_at(ch, start), seq_at(ch, start + round(off * S)), seq_at(ch, end)
            t1, v1 = generate(first, ch, a, b)
            t2, v2 = generate(second, ch, b, c)
            assert np.concatenate([t1, t2]).tobytes() == whole[ch.name][0].tobytes(), ch.name
            assert np.concatenate([v1, v2]).tobytes() == whole[ch.name][1].tobytes(), ch.name


def _productions(tl: LineTimeline, day: int) -> list[Production]:
    return tl.productions_between(ORIGIN_NS + day * DAY, ORIGIN_NS + (day + 1) * DAY)


def test_temperature_lags_setpoint_with_documented_time_constant() -> None:
    tl = LineTimeline(CFG, "L1")
    prods = [p for p in _productions(tl, 3) if not p.outcome.fault]
    steps = [
        (a, b) for a, b in itertools.pairwise(prods) if abs(b.params.temperature - a.params.temperature) > 5
    ]
    assert len(steps) >= 10
    tau = 120.0  # documented in docs/simulator.md
    for prev, p in steps[:10]:
        t = p.start_ns + np.arange(0, round(tau * 1.5) * S, S // 10, dtype=np.int64)
        temp = clean_values(tl, "temp_zone3", t)
        sp = p.params.temperature
        gap = sp - temp
        assert np.all(np.diff(np.abs(gap)) < 0)  # approaches the setpoint monotonically
        assert np.all(np.sign(gap) == np.sign(gap[0]))
        i_tau = round(tau * 10)
        assert gap[i_tau] == pytest.approx(gap[0] * math.exp(-1.0), rel=1e-9)
        assert abs(temp[0] - prev.params.temperature) < abs(temp[0] - sp)
        sp_sig = clean_values(tl, "sp_temperature", t)
        assert np.all(sp_sig == sp)


def test_noise_is_bounded_and_channel_specific() -> None:
    tl = LineTimeline(CFG, "L1")
    start = ORIGIN_NS + 4 * DAY + 8 * 3600 * S
    for name in ("temp_zone1", "motor_current", "humidity", "production_id"):
        ch = CHANNELS[name]
        t, v = generate(tl, ch, seq_at(ch, start), seq_at(ch, start + 600 * S))
        clean = clean_values(tl, name, t)
        std = noise_std(name)
        resid = v - clean
        assert np.all(np.abs(resid) <= 2 * math.sqrt(3) * std + 1e-12)
        if std:
            assert 0.8 * std < resid.std() < 1.2 * std


def test_shift_handover_converges_to_standby_and_boundaries_are_continuous() -> None:
    tl = LineTimeline(CFG, "L1")
    k = shift_index_at(ORIGIN_NS + 5 * DAY)
    boundary = shift_start_ns(k)
    first = tl.shift_plan(k).productions[0].start_ns
    assert first - boundary >= 10 * max(lag.tau_s for lag in LAGS.values()) * S
    for name in LAGS:
        across = clean_values(tl, name, np.array([boundary - 1, boundary], dtype=np.int64))
        assert abs(across[1] - across[0]) < 1e-6, name  # chained exactly through the shift change
        at_reset = clean_values(tl, name, np.array([first - 1, first], dtype=np.int64))
        assert abs(at_reset[1] - at_reset[0]) < 0.01, name  # state has converged to standby
    assert clean_values(tl, "sp_temperature", np.array([boundary, first - 1])).tolist() == [STANDBY_TEMP] * 2


def test_cloud_can_reconstruct_productions_from_slow_channels() -> None:
    tl = LineTimeline(CFG, "L1")
    k = shift_index_at(ORIGIN_NS + 6 * DAY)
    t0, t1 = shift_start_ns(k), shift_start_ns(k + 1)
    prods = tl.productions_between(t0, t1)
    sig = {}
    for name in ("production_id", "sp_temperature", "sp_feed_rate", "sp_pressure", "lot_hardness", "set_by",
                 "qa_production_id", "qa_quality"):  # fmt: skip
        ch = CHANNELS[name]
        _, sig[name] = generate(tl, ch, seq_at(ch, t0), seq_at(ch, t1))
    times = np.array(
        [
            t_of_seq(CHANNELS["production_id"], s)
            for s in range(seq_at(CHANNELS["production_id"], t0), seq_at(CHANNELS["production_id"], t1))
        ]
    )
    seen = sorted({int(x) for x in sig["production_id"] if x})
    assert seen == [p.production_id for p in prods if p.start_ns >= t0]
    by_id = {p.production_id: p for p in prods}
    for pid in seen:
        rows = sig["production_id"] == pid
        p = by_id[pid]
        assert set(sig["sp_temperature"][rows]) == {p.params.temperature}
        assert set(sig["sp_feed_rate"][rows]) == {p.params.feed_rate}
        assert set(sig["sp_pressure"][rows]) == {p.params.pressure}
        assert set(sig["lot_hardness"][rows]) == {p.lot.hardness}
        assert set(sig["set_by"][rows]) == {p.set_by_code}
        published = (sig["qa_production_id"] == pid) & (times >= p.qa_ns)
        if p.qa_ns < t1:
            assert published.any()
            assert set(sig["qa_quality"][sig["qa_production_id"] == pid]) == {p.outcome.quality}
    assert not (sig["qa_production_id"] == 0).any()  # previous shift's QA is already published
    for i in range(0, len(times), 997):
        last = tl.last_qa_before(int(times[i]))
        assert last is not None and last.production_id == sig["qa_production_id"][i]


def test_faults_show_in_the_signals() -> None:
    tl = LineTimeline(SimConfig(seed=3), "L1")
    faults = [p for d in range(0, 14) for p in _productions(tl, d) if p.outcome.fault]
    kinds = {p.outcome.fault for p in faults}
    assert kinds == {"over_current", "over_temperature"}
    for p in faults[:12]:
        during = np.arange(p.end_ns, p.fault_end_ns, S, dtype=np.int64)
        assert set(clean_values(tl, "machine_state", during)) == {2.0}
        assert set(clean_values(tl, "fault_code", during)) == {float(p.fault_code)}
        assert set(clean_values(tl, "production_id", during)) == {float(p.production_id)}
        early = np.array([p.start_ns + (p.end_ns - p.start_ns) // 3], dtype=np.int64)
        late = np.array([p.end_ns - S // 10], dtype=np.int64)
        if p.outcome.fault == "over_current":
            running = clean_values(
                tl, "motor_current", np.arange(p.start_ns + 10 * S, p.end_ns - 10 * S, S // 10)
            )
            assert clean_values(tl, "motor_current", late)[0] > 1.5 * running.mean()
        else:
            rise = clean_values(tl, "temp_zone3", late)[0] - clean_values(tl, "temp_zone3", early)[0]
            assert rise > 15.0
    after = np.array([p.fault_end_ns + S for p in faults], dtype=np.int64)
    assert set(clean_values(tl, "machine_state", after)) == {0.0}


def test_machine_state_and_mechanism_follow_the_schedule() -> None:
    tl = LineTimeline(CFG, "L1")
    p = next(p for p in _productions(tl, 2) if not p.outcome.fault)
    t = np.arange(p.start_ns - 20 * S, p.end_ns + 20 * S, S // 10, dtype=np.int64)
    state = clean_values(tl, "machine_state", t)
    running = (t >= p.start_ns) & (t < p.end_ns)
    assert np.array_equal(state == 1.0, running)
    angle = clean_values(tl, "mech_angle", t[running])
    dt = (t[running] - p.start_ns) / S
    expected = np.mod(dt * p.params.feed_rate / 60.0 * 360.0, 360.0)
    assert np.allclose(np.minimum(np.abs(angle - expected), 360 - np.abs(angle - expected)), 0.0, atol=1e-6)
    assert (
        clean_values(tl, "motor_current", t[running]).min()
        > clean_values(tl, "motor_current", t[~running]).max()
    )
    assert np.all(clean_values(tl, "mech_position", t) >= 0.0)


def test_generate_rejects_reversed_range_and_accepts_empty() -> None:
    tl = LineTimeline(CFG, "L1")
    ch = CHANNELS["temp_zone1"]
    t, v = generate(tl, ch, 100, 100)
    assert len(t) == len(v) == 0 and t.dtype == np.int64 and v.dtype == np.float64
    with pytest.raises(ValueError, match="seq_end"):
        generate(tl, ch, 101, 100)
    with pytest.raises(ValueError, match="seq_start"):
        generate(tl, ch, -1, 100)
