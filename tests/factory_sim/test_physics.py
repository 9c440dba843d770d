"""Process model: lots, hidden optimum, outcomes, craftsmen, roster and the production schedule."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest

from factory_core.machine import PARAMETERS, SAFETY_RANGES
from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.craftsmen import (
    CRAFTSMEN,
    SHIFT_NS,
    Decision,
    ProductionContext,
    craftsman_policy,
    evaluation_key,
    on_shift,
    shift_index_at,
    shift_slot,
    shift_start_ns,
)
from factory_sim.noise import (
    derive_key,
    gauss_array,
    hash_array,
    hash_at,
    normal_at,
    uniform_array,
    uniform_at,
)
from factory_sim.physics import (
    Lot,
    Params,
    draw_lot,
    heldout_lot,
    nominal_cycle_time_s,
    optimum,
    outcome,
    within_safety,
)
from factory_sim.schedule import HANDOVER_S, QA_DELAY_S, LineTimeline

DAY_NS = 86_400 * NS_PER_S
BY_SKILL = {c.skill: c for c in reversed(CRAFTSMEN)}  # first craftsman of each skill


def test_noise_scalar_and_vector_agree_for_any_counter() -> None:
    key = derive_key(7, "L1", "x")
    counters = np.array([-5, 0, 1, 2**40, 123456789], dtype=np.int64)
    assert [int(h) for h in hash_array(key, counters)] == [hash_at(key, int(c)) for c in counters]
    assert uniform_array(key, counters).tolist() == [uniform_at(key, int(c)) for c in counters]
    assert derive_key(7, "L1", "x") != derive_key(7, "L2", "x") != derive_key(8, "L1", "x")


def test_gauss_noise_is_roughly_standard_normal() -> None:
    x = gauss_array(derive_key(1, "n"), np.arange(200_000))
    assert abs(x.mean()) < 0.01
    assert abs(x.std() - 1.0) < 0.01
    assert normal_at(3, 4) == normal_at(3, 4) != normal_at(3, 5)


def test_lots_vary_lot_to_lot_and_drift_with_season() -> None:
    jan = [draw_lot(42, "L1", ORIGIN_NS + 15 * DAY_NS, i) for i in range(400)]
    jul = [draw_lot(42, "L1", ORIGIN_NS + 196 * DAY_NS, i) for i in range(400)]
    assert statistics.pstdev(lot.hardness for lot in jan) > 3.0
    assert len({lot.moisture for lot in jan}) > 0.95 * len(jan)
    assert statistics.mean(lot.moisture for lot in jul) - statistics.mean(lot.moisture for lot in jan) > 2.0
    assert statistics.mean(lot.hardness for lot in jan) - statistics.mean(lot.hardness for lot in jul) > 5.0
    assert draw_lot(42, "L1", ORIGIN_NS, 5) == draw_lot(42, "L1", ORIGIN_NS, 5)
    assert draw_lot(42, "L1", ORIGIN_NS, 5) != draw_lot(43, "L1", ORIGIN_NS, 5)


def test_heldout_stream_is_distinct_and_drift_shifts_it() -> None:
    t = ORIGIN_NS + 30 * DAY_NS
    held = heldout_lot(42, 7, t)
    line = draw_lot(42, "L1", t, 7)
    assert (held.moisture, held.hardness) != (line.moisture, line.hardness)
    ahead = [heldout_lot(42, i, t, drift_days=91.3) for i in range(300)]
    now = [heldout_lot(42, i, t) for i in range(300)]
    assert abs(statistics.mean(a.moisture for a in ahead) - statistics.mean(n.moisture for n in now)) > 0.8


def test_optimum_is_safe_nonlinear_and_has_interactions() -> None:
    def p(m: float, h: float) -> Params:
        return optimum(Lot("x", 6.0 + m, 65.0 + h, 1.3, 0.5))

    for lot in (draw_lot(1, "L1", ORIGIN_NS + d * DAY_NS, d) for d in range(0, 365, 5)):
        assert within_safety(optimum(lot))
    interaction = p(2, 10).temperature - p(2, 0).temperature - p(0, 10).temperature + p(0, 0).temperature
    assert abs(interaction) > 1.0
    curvature = p(0, 20).feed_rate - 2 * p(0, 10).feed_rate + p(0, 0).feed_rate
    assert abs(curvature) > 0.1


def test_outcome_is_deterministic_given_key() -> None:
    lot = draw_lot(3, "L1", ORIGIN_NS, 1)
    params = optimum(lot)
    assert outcome(lot, params, 11) == outcome(lot, params, 11)
    assert outcome(lot, params, 11) != outcome(lot, params, 12)


def test_quality_peaks_at_the_optimum() -> None:
    lot = Lot("x", 7.0, 70.0, 1.35, 0.4)
    best = optimum(lot)
    q_best = statistics.mean(outcome(lot, best, k).quality for k in range(200))
    for name in PARAMETERS:
        for delta in (-6.0, 6.0):
            off = Params(**{**best.__dict__, name: getattr(best, name) + delta})
            assert statistics.mean(outcome(lot, off, k).quality for k in range(200)) < q_best


def test_badly_wrong_settings_fault_and_faults_abort_the_run() -> None:
    lot = Lot("hard", 6.0, 85.0, 1.35, 0.5)
    too_fast = Params(optimum(lot).temperature, SAFETY_RANGES["feed_rate"][1], optimum(lot).pressure)
    too_hot = Params(SAFETY_RANGES["temperature"][1], optimum(lot).feed_rate, optimum(lot).pressure)
    fast = [outcome(lot, too_fast, k) for k in range(100)]
    hot = [outcome(lot, too_hot, k) for k in range(100)]
    assert sum(o.fault == "over_current" for o in fast) > 90
    assert sum(o.fault == "over_temperature" for o in hot) > 90
    for o in fast + hot:
        if o.fault:
            assert o.quality == 0.0 and o.fault_at_s == o.cycle_time_s and o.energy_kwh > 0
    assert all(outcome(lot, optimum(lot), k).fault is None for k in range(200))


def test_cycle_time_falls_with_feed_rate_and_energy_is_positive() -> None:
    lot = Lot("x", 6.0, 65.0, 1.3, 0.5)
    slow, fast = Params(200, 20, 100), Params(200, 40, 100)
    assert nominal_cycle_time_s(lot, slow) == pytest.approx(2 * nominal_cycle_time_s(lot, fast))
    assert 60.0 < nominal_cycle_time_s(lot, Params(200, 34, 100)) < 400.0
    assert outcome(lot, fast, 1).energy_kwh > 0


def test_oracle_beats_expert_beats_intermediate_beats_novice_over_1000_lots() -> None:
    lots = [heldout_lot(42, i, ORIGIN_NS + (i % 365) * DAY_NS) for i in range(1000)]

    def score(decide) -> tuple[float, float]:
        outs = [outcome(lot, decide(lot, i), evaluation_key(42, i)) for i, lot in enumerate(lots)]
        return statistics.mean(o.quality for o in outs), sum(o.fault is not None for o in outs) / len(outs)

    q_oracle, f_oracle = score(lambda lot, i: optimum(lot))
    levels = [
        score(lambda lot, i, c=BY_SKILL[s]: c.decide(lot, derive_key(1, i)))
        for s in ("expert", "intermediate", "novice")
    ]
    (q_exp, f_exp), (q_int, f_int), (q_nov, f_nov) = levels
    assert q_oracle > q_exp > q_int > q_nov
    assert q_exp - q_nov > 30.0
    assert f_oracle <= f_exp <= f_int < f_nov
    assert f_nov > 0.02


def test_craftsmen_respect_safety_ranges() -> None:
    extreme = Lot("x", 14.0, 95.0, 1.6, 4.0)
    for c in CRAFTSMEN:
        for k in range(50):
            assert within_safety(c.decide(extreme, k))
    codes = [c.code for c in CRAFTSMEN]
    assert len(set(codes)) == len(codes) >= 4 and all(1 <= c <= 99 for c in codes)
    assert {"expert", "intermediate", "novice"} <= {c.skill for c in CRAFTSMEN}


def test_roster_rotates_and_slots_are_morning_afternoon_night() -> None:
    k = shift_index_at(ORIGIN_NS + 7 * 3600 * NS_PER_S)  # 07:00 on 1 January
    assert shift_slot(k) == 0 and (shift_start_ns(k) - ORIGIN_NS) // NS_PER_S == 6 * 3600
    for day in range(0, 60, 7):
        crew = {on_shift(42, "L1", k + 3 * day + s).code for s in range(3)}
        assert len(crew) == 3
    worked = {on_shift(42, "L1", k + i).code for i in range(21 * 5)}
    assert worked == {c.code for c in CRAFTSMEN}
    assert on_shift(42, "L1", k) == on_shift(42, "L1", k)


def test_schedule_is_back_to_back_with_handover_and_unique_ids() -> None:
    tl = LineTimeline(SimConfig(seed=5), "L1")
    k = shift_index_at(ORIGIN_NS + 3 * DAY_NS)
    prods = tl.productions_between(shift_start_ns(k), shift_start_ns(k + 3))
    ids = [p.production_id for p in prods]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    for shift in (k, k + 1, k + 2):
        mine = [p for p in prods if p.shift_index == shift]
        assert 80 <= len(mine) <= 130
        assert mine[0].start_ns == shift_start_ns(shift) + HANDOVER_S * NS_PER_S
        assert mine[-1].qa_ns < shift_start_ns(shift) + SHIFT_NS
        assert {p.set_by_code for p in mine} == {on_shift(5, "L1", shift).code}
    for a, b in itertools.pairwise(prods):
        if a.shift_index == b.shift_index:
            assert 30 * NS_PER_S <= b.start_ns - a.fault_end_ns <= 90 * NS_PER_S
        assert QA_DELAY_S[0] * NS_PER_S <= a.qa_ns - a.end_ns <= QA_DELAY_S[1] * NS_PER_S
        assert a.qa_ns < b.qa_ns
    assert (
        LineTimeline(SimConfig(seed=5), "L1").productions_between(shift_start_ns(k), shift_start_ns(k + 3))
        == prods
    )


def test_productions_cross_midnight_over_a_few_days() -> None:
    tl = LineTimeline(SimConfig(), "L1")
    crossing = [
        p
        for day in range(1, 5)
        for p in tl.productions_between(ORIGIN_NS + day * DAY_NS - 1, ORIGIN_NS + day * DAY_NS)
        if p.start_ns < ORIGIN_NS + day * DAY_NS <= p.end_ns
    ]
    assert len(crossing) >= 2


def test_lazy_planning_equals_whole_shift_planning() -> None:
    cfg = SimConfig(seed=9)
    k = shift_index_at(ORIGIN_NS + 10 * DAY_NS)
    whole = LineTimeline(cfg, "L1").productions_between(shift_start_ns(k), shift_start_ns(k + 1))
    lazy = LineTimeline(cfg, "L1", policy=craftsman_policy)
    pieces: list = []
    t = shift_start_ns(k)
    step = 97 * NS_PER_S
    while t < shift_start_ns(k + 1):
        pieces.extend(p for p in lazy.productions_between(t, t + step) if p.start_ns >= t)
        t += step
    assert pieces == whole


def _model_policy(params: Params, calls: list[int]):
    def policy(lot: Lot, ctx: ProductionContext) -> Decision:
        calls.append(ctx.production_id)
        return Decision(params, "model:v3", 1003)

    return policy


def test_policy_is_called_at_production_start_and_used_when_safe() -> None:
    calls: list[int] = []
    tl = LineTimeline(SimConfig(), "L1", policy=_model_policy(Params(200.0, 30.0, 100.0), calls))
    k = shift_index_at(ORIGIN_NS + DAY_NS)
    first = shift_start_ns(k) + HANDOVER_S * NS_PER_S
    assert tl.productions_between(shift_start_ns(k), first) == []
    assert calls == []
    prods = tl.productions_between(first, first + 1)
    assert calls == [prods[0].production_id]
    assert prods[0].set_by_code == 1003 and prods[0].params == Params(200.0, 30.0, 100.0)
    assert tl.refused == 0


def test_unsafe_or_failing_policy_is_refused_and_craftsman_takes_over() -> None:
    def boom(lot: Lot, ctx: ProductionContext) -> Decision:
        raise RuntimeError("endpoint down")

    k = shift_index_at(ORIGIN_NS + DAY_NS)
    window = (shift_start_ns(k), shift_start_ns(k) + 3 * 3600 * NS_PER_S)
    baseline = LineTimeline(SimConfig(), "L1").productions_between(*window)
    unsafe = Params(SAFETY_RANGES["temperature"][1] + 1.0, 30.0, 100.0)
    for policy in (_model_policy(unsafe, []), _model_policy(Params(float("nan"), 30, 100), []), boom):
        tl = LineTimeline(SimConfig(), "L1", policy=policy)
        assert tl.productions_between(*window) == baseline
        assert tl.refused == len(baseline) > 0


def test_policy_since_keeps_the_past_with_the_craftsman() -> None:
    calls: list[int] = []
    since = ORIGIN_NS + DAY_NS
    tl = LineTimeline(
        SimConfig(), "L1", policy=_model_policy(Params(200, 30, 100), calls), policy_since_ns=since
    )
    prods = tl.productions_between(since - 3600 * NS_PER_S, since + 3600 * NS_PER_S)
    assert all((p.set_by_code == 1003) == (p.start_ns >= since) for p in prods)
    assert sorted(calls) == [p.production_id for p in prods if p.start_ns >= since]


def test_unknown_line_is_rejected_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="line"):
        LineTimeline(SimConfig(), "L9")
    with pytest.raises(ValueError, match="fast_rate_hz"):
        SimConfig(fast_rate_hz=3.0)
