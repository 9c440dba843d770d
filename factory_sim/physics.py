"""Process physics of one forming machine: raw-material lots, the hidden optimum and outcomes.

Everything is a pure function of its inputs (randomness comes from counter-based keys), so the
evaluate command can replay any lot under any decision without a time axis.
The equations are documented in docs/simulator.md; keep the two in step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from factory_core.machine import (
    CYCLE_MAX_S,
    LOT_LIMITS,
    PARAMETERS,
    QUALITY_FIGURES,
    SAFETY_RANGES,
    lot_id,
)
from factory_sim.config import NS_PER_S, ORIGIN_NS
from factory_sim.noise import derive_key, normal_at, uniform_at

# Quality tolerance (one "sigma" of deviation from the optimum) per parameter.
TOLERANCE = {"temperature": 8.0, "feed_rate": 4.0, "pressure": 12.0}
# Cross terms of the quality penalty (interactions between parameters).
CROSS_TF = 0.8
CROSS_TP = 0.6
FAULT_THRESHOLD = 3.0  # fault score at which the fault probability is 50 %
FAULT_SOFTNESS = 0.25
CYCLE_MIN_S = 30.0
DAY_NS = 86_400 * NS_PER_S
YEAR_DAYS = 365.25
LOT_BATCH = 25  # consecutive lots share a supplier batch offset
HELDOUT_SALT = 0x5EED_0E7A_1F00_D001


@dataclass(frozen=True)
class Lot:
    """One raw-material lot and its four incoming-inspection quality figures."""

    lot_id: str
    moisture: float  # % water
    hardness: float  # HB
    density: float  # g/cm3
    impurity: float  # % foreign matter


@dataclass(frozen=True)
class Params:
    """The three machine parameters a craftsman (or model) dials in for one production."""

    temperature: float  # degC
    feed_rate: float  # strokes/min
    pressure: float  # bar

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.temperature, self.feed_rate, self.pressure)


@dataclass(frozen=True)
class Outcome:
    """Result of one production. ``cycle_time_s`` is the actual run time (== ``fault_at_s`` on a fault)."""

    quality: float  # QA score 0..100 (0 = scrap after a fault)
    cycle_time_s: float
    energy_kwh: float
    fault: str | None  # None | "over_current" | "over_temperature"
    fault_at_s: float | None


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def within_safety(params: Params) -> bool:
    """True if every parameter is finite and inside its hard safety range."""
    for name, value in zip(PARAMETERS, params.as_tuple(), strict=True):
        lo, hi = SAFETY_RANGES[name]
        if not (math.isfinite(value) and lo <= value <= hi):
            return False
    return True


def clip_to_safety(params: Params) -> Params:
    """Clamp each parameter into its hard safety range (the dial's mechanical stops)."""
    vals = [_clip(v, *SAFETY_RANGES[n]) for n, v in zip(PARAMETERS, params.as_tuple(), strict=True)]
    return Params(*vals)


def _centred(lot: Lot) -> tuple[float, float, float, float]:
    """Lot figures centred and scaled to roughly unit spread (m, h, d, i)."""
    return (lot.moisture - 6.0, (lot.hardness - 65.0) / 10.0, (lot.density - 1.30) / 0.10, lot.impurity)


def optimum(lot: Lot) -> Params:
    """Hidden optimum p*(lot): nonlinear, with interactions between lot figures."""
    m, h, d, i = _centred(lot)
    t = 200.0 + 3.5 * m + 6.0 * h + 4.0 * d + 1.5 * m * h + 3.0 * i - 0.15 * m * m
    f = 34.0 - 3.0 * h - 1.2 * m + 0.4 * h * m - 0.5 * h * h - 2.5 * i * i / (1.0 + i)
    p = 100.0 + 7.0 * h + 5.0 * d + 0.6 * m * m - 4.0 * i + 2.0 * h * d
    return Params(_clip(t, 150.0, 250.0), _clip(f, 14.0, 55.0), _clip(p, 50.0, 150.0))


def deviation(lot: Lot, params: Params) -> tuple[float, float, float]:
    """Normalised deviation of ``params`` from p*(lot), in tolerance units (dT, dF, dP)."""
    opt = optimum(lot)
    return (
        (params.temperature - opt.temperature) / TOLERANCE["temperature"],
        (params.feed_rate - opt.feed_rate) / TOLERANCE["feed_rate"],
        (params.pressure - opt.pressure) / TOLERANCE["pressure"],
    )


def penalty(lot: Lot, params: Params) -> float:
    """Quadratic-form distance d^2 to the optimum (positive definite, with cross terms)."""
    dt, df, dp = deviation(lot, params)
    return dt * dt + df * df + dp * dp + CROSS_TF * dt * df + CROSS_TP * dt * dp


def max_quality(lot: Lot) -> float:
    """Best achievable QA score for a lot: poor material caps quality even at the optimum."""
    m, _h, _d, i = _centred(lot)
    return 97.0 - 4.0 * max(0.0, i - 1.0) - 0.4 * abs(m)


def fault_scores(lot: Lot, params: Params) -> tuple[float, float]:
    """(over_current, over_temperature) scores; a fault becomes likely above FAULT_THRESHOLD."""
    dt, df, dp = deviation(lot, params)
    oc = max(0.0, df) + 0.5 * max(0.0, -dt) + 0.4 * max(0.0, dp)
    ot = max(0.0, dt) + 0.3 * max(0.0, df)
    return oc, ot


def _sigmoid(x: float) -> float:
    if x < -60.0:
        return 0.0
    return 1.0 / (1.0 + math.exp(-x))


def fault_probabilities(lot: Lot, params: Params) -> tuple[float, float]:
    """Probabilities of (over_current, over_temperature) for one production."""
    oc, ot = fault_scores(lot, params)
    return (
        _sigmoid((oc - FAULT_THRESHOLD) / FAULT_SOFTNESS),
        _sigmoid((ot - FAULT_THRESHOLD) / FAULT_SOFTNESS),
    )


def nominal_cycle_time_s(lot: Lot, params: Params) -> float:
    """Noise-free cycle time: strokes needed for the lot divided by the stroke rate."""
    _m, h, _d, _i = _centred(lot)
    strokes = 110.0 * (lot.density / 1.30) * (1.0 + 0.03 * h)
    speedup = (1.0 + 0.15 * (params.pressure - 100.0) / 100.0) * (1.0 + 0.001 * (params.temperature - 200.0))
    return 60.0 * strokes / params.feed_rate / speedup


def run_power_kw(lot: Lot, params: Params) -> float:
    """Electrical power drawn while running: heaters + main drive (load ~ hardness x feed) + hydraulics."""
    return (
        5.0
        + 0.04 * (params.temperature - 20.0)
        + 0.0025 * lot.hardness * params.feed_rate
        + 0.03 * params.pressure
    )


def outcome(lot: Lot, params: Params, key: int) -> Outcome:
    """Deterministic outcome of running ``lot`` at ``params``; ``key`` selects the random draws.

    ``params`` outside the safety ranges are clamped first (the machine cannot be set beyond them).
    """
    params = clip_to_safety(params)
    nominal = nominal_cycle_time_s(lot, params)
    cycle = _clip(nominal * (1.0 + 0.01 * normal_at(key, 0)), CYCLE_MIN_S, CYCLE_MAX_S)
    p_oc, p_ot = fault_probabilities(lot, params)
    fault: str | None = None
    fault_at: float | None = None
    if uniform_at(key, 10) < p_oc:
        fault, fault_at = "over_current", cycle * (0.1 + 0.5 * uniform_at(key, 12))
    elif uniform_at(key, 11) < p_ot:
        fault, fault_at = "over_temperature", cycle * (0.4 + 0.5 * uniform_at(key, 12))
    if fault is not None and fault_at is not None:
        fault_at = max(CYCLE_MIN_S / 2.0, fault_at)
        return Outcome(0.0, fault_at, run_power_kw(lot, params) * fault_at / 3600.0, fault, fault_at)
    q = max_quality(lot) * math.exp(-0.5 * penalty(lot, params)) + 0.8 * normal_at(key, 1)
    energy = run_power_kw(lot, params) * cycle / 3600.0
    return Outcome(_clip(q, 0.0, 100.0), cycle, energy, None, None)


def season_phase(t_ns: int) -> float:
    """Phase (radians) of the year at ``t_ns`` (0 at 1 January)."""
    days = (t_ns - ORIGIN_NS) / DAY_NS
    return 2.0 * math.pi * (days % YEAR_DAYS) / YEAR_DAYS


def seasonal_means(t_ns: int) -> dict[str, float]:
    """Mean lot figures at ``t_ns``: wetter, softer material in late summer, drier in winter."""
    ph = season_phase(t_ns)
    s, c = math.sin(ph - 1.6), math.cos(ph)
    return {
        "moisture": 6.0 + 2.0 * s,
        "hardness": 65.0 - 6.0 * s + 2.0 * c,
        "density": 1.30 + 0.04 * c,
        "impurity": 0.6 + 0.3 * s,
    }


_LOT_SPREAD = {"moisture": 1.2, "hardness": 7.0, "density": 0.05, "impurity": 0.45}  # impurity: log scale
_BATCH_SPREAD = {"moisture": 0.8, "hardness": 4.0, "density": 0.03, "impurity": 0.30}


def draw_lot(seed: int, line: str, t_ns: int, index: int) -> Lot:
    """Lot number ``index`` of ``line`` delivered at ``t_ns``.

    figure = seasonal mean(day of year) + supplier-batch offset (shared by LOT_BATCH consecutive
    indices) + lot noise; clamped to LOT_LIMITS. Pure function of its arguments.
    """
    means = seasonal_means(t_ns)
    batch_key = derive_key(seed, line, "lot-batch", index // LOT_BATCH)
    lot_key = derive_key(seed, line, "lot", index)
    figs: dict[str, float] = {}
    for k, name in enumerate(QUALITY_FIGURES):
        z_batch, z_lot = normal_at(batch_key, k), normal_at(lot_key, k)
        if name == "impurity":  # a share: log-normal around the seasonal mean, never negative
            value = means[name] * math.exp(_BATCH_SPREAD[name] * z_batch + _LOT_SPREAD[name] * z_lot)
        else:
            value = means[name] + _BATCH_SPREAD[name] * z_batch + _LOT_SPREAD[name] * z_lot
        figs[name] = _clip(value, *LOT_LIMITS[name])
    figs["impurity"] = round(figs["impurity"], 4)
    return Lot(
        lot_id=lot_id(line, index),
        moisture=round(figs["moisture"], 4),
        hardness=round(figs["hardness"], 3),
        density=round(figs["density"], 5),
        impurity=figs["impurity"],
    )


def heldout_lot(seed: int, index: int, t_ns: int, drift_days: float = 0.0) -> Lot:
    """Held-out evaluation lot: a stream no line ever draws (distinct key), optionally drifted.

    ``drift_days=91.3`` evaluates on lots from a quarter ahead of ``t_ns`` (seasonal drift).
    """
    shifted = t_ns + round(drift_days * DAY_NS)
    lot = draw_lot(seed ^ HELDOUT_SALT, "HELDOUT", shifted, index)
    return Lot(f"HELDOUT-{index}", lot.moisture, lot.hardness, lot.density, lot.impurity)


def outcome_key(seed: int, line: str, production_id: int) -> int:
    """Key of the outcome draws of one production (independent of who decided the params)."""
    return derive_key(seed, line, "outcome", production_id)
