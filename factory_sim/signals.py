"""Sensor signals of a line as pure, vectorized functions of time.

``generate`` evaluates one channel over any seq range: the shift plan gives piecewise-constant
segments (standby, running, fault, changeover hold); lagged quantities (temperatures, pressure, feed)
follow first-order lags solved analytically per segment, chained from the shift start where the
state is at standby by construction (see schedule.HANDOVER_S). Noise is counter-based, keyed by
(seed, line, channel, seq). Hence [a, c) == [a, b) + [b, c) bit for bit, for any b.
"""

from __future__ import annotations

import itertools
import math
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from factory_core.machine import HEATER_RUN_OFFSETS
from factory_sim.channels import EXTRA_PREFIX, Channel
from factory_sim.config import NS_PER_S, ORIGIN_NS
from factory_sim.craftsmen import shift_index_at, shift_start_ns
from factory_sim.noise import derive_key, gauss_array
from factory_sim.physics import DAY_NS, YEAR_DAYS, penalty
from factory_sim.schedule import LineTimeline, ShiftPlan

STANDBY_TEMP = 120.0  # heater setpoint while the line waits (handover, end of shift)
SEGMENT_KINDS = ("standby", "run", "fault", "hold")  # names of STANDBY, RUN, FAULT, HOLD
STANDBY, RUN, FAULT, HOLD = 0, 1, 2, 3
OC_RAMP_S = 6.0  # over-current: motor current ramps up over the last seconds before the trip
OC_SPIKE = 1.2  # ... to (1 + OC_SPIKE) x its running value at the trip
OT_RAMP_S = 30.0  # over-temperature: temperatures run away over the last seconds before the trip
OT_DECAY_S = 40.0  # excursion decays after the trip
OT_AMPLITUDE = {
    "temp_zone1": 20.0,
    "temp_zone2": 25.0,
    "temp_zone3": 30.0,
    "temp_die": 35.0,
    "material_temp": 15.0,
}
GEAR_RATIO = 30.0  # motor rpm per stroke/min

# Gaussian measurement-noise std dev per channel (0 = exact / discrete channel).
NOISE_STD: dict[str, float] = {
    "temp_zone1": 0.15,
    "temp_zone2": 0.15,
    "temp_zone3": 0.15,
    "temp_die": 0.2,
    "mech_angle": 0.1,
    "mech_position": 0.05,
    "motor_current": 0.3,
    "feed_motor_current": 0.05,
    "vibration_rms": 0.02,
    "vibration_peak": 0.05,
    "pressure_actual": 0.4,
    "feed_rate_actual": 0.1,
    "torque": 0.4,
    "motor_speed": 2.0,
    "coolant_temp": 0.1,
    "ambient_temp": 0.05,
    "humidity": 0.3,
    "power_kw": 0.15,
    "material_temp": 0.2,
}
EXTRA_NOISE_STD = 0.01
NON_NEGATIVE = frozenset(
    {"motor_current", "feed_motor_current", "vibration_rms", "vibration_peak", "pressure_actual", "feed_rate_actual",
     "motor_speed", "power_kw", "torque"}
)  # fmt: skip


@dataclass(frozen=True)
class Lag:
    """First-order lag x' = (target - x) / tau with a per-segment-kind target."""

    tau_s: float
    target: Callable[[SegmentTable], np.ndarray]


def _heater(offset_run: float, offset_other: float) -> Callable[[SegmentTable], np.ndarray]:
    return lambda s: s.heater_sp + np.where(s.kind == RUN, offset_run, offset_other)


LAGS: dict[str, Lag] = {
    # Running levels relative to the setpoint come from the machine spec (the over-temperature alarm
    # the production table counts is defined against them).
    "temp_zone1": Lag(60.0, _heater(HEATER_RUN_OFFSETS["temp_zone1"], -20.0)),
    "temp_zone2": Lag(90.0, _heater(HEATER_RUN_OFFSETS["temp_zone2"], -8.0)),
    "temp_zone3": Lag(120.0, _heater(HEATER_RUN_OFFSETS["temp_zone3"], 0.0)),
    "temp_die": Lag(180.0, _heater(HEATER_RUN_OFFSETS["temp_die"], -5.0)),
    "coolant_temp": Lag(
        150.0, lambda s: 22.0 + 0.06 * (s.heater_sp - 20.0) + np.where(s.kind == RUN, 3.0, 0.0)
    ),
    "material_temp": Lag(45.0, lambda s: np.where(s.kind == RUN, 0.8 * s.heater_sp + 5.0, 40.0)),
    "pressure_actual": Lag(3.0, lambda s: np.where(s.kind == RUN, s.pressure, 0.0)),
    "feed_rate_actual": Lag(1.5, lambda s: np.where(s.kind == RUN, s.feed_rate, 0.0)),
}
MAX_TAU_S = max(lag.tau_s for lag in LAGS.values())


@dataclass
class SegmentTable:
    """Piecewise-constant machine state of one shift: segment i covers [t0[i], t0[i+1])."""

    t0: np.ndarray  # int64 segment starts
    kind: np.ndarray  # int8 STANDBY/RUN/FAULT/HOLD
    heater_sp: np.ndarray  # degC heater setpoint in effect
    temperature: np.ndarray  # production parameters (0 outside RUN/FAULT)
    feed_rate: np.ndarray
    pressure: np.ndarray
    moisture: np.ndarray
    hardness: np.ndarray
    density: np.ndarray
    impurity: np.ndarray
    production_id: np.ndarray
    set_by_code: np.ndarray
    fault_code: np.ndarray  # of the production (all its segments)
    prod_start: np.ndarray  # int64 start of the segment's production
    prod_end: np.ndarray  # int64 end of the segment's production run
    mismatch: np.ndarray  # sqrt of the quality penalty of the production (chatter)
    qa_ns: np.ndarray  # QA publications of the previous and this shift (sorted)
    qa_pid: np.ndarray
    qa_quality: np.ndarray
    reset: np.ndarray  # bool: lag state is the converged standby value (end of the shift handover)
    lag_start: dict[str, np.ndarray] = field(default_factory=dict)

    def lag_state(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(target, value at segment start) of lag ``name``, chained from standby at shift start."""
        lag = LAGS[name]
        target = np.asarray(lag.target(self), dtype=np.float64)
        if name not in self.lag_start:
            x0 = np.empty_like(target)
            x0[0] = target[0]
            decay = np.exp(-np.diff(self.t0).astype(np.float64) / (lag.tau_s * NS_PER_S))
            for i in range(1, len(target)):
                if self.reset[i]:
                    x0[i] = target[i - 1]
                else:
                    x0[i] = target[i - 1] + (x0[i - 1] - target[i - 1]) * decay[i - 1]
            self.lag_start[name] = x0
        return target, self.lag_start[name]


def _rows(plan: ShiftPlan) -> list[tuple]:
    """Segments of one shift as (t0, kind, heater_sp, production or None), from the shift start."""
    rows: list[tuple] = [(plan.start_ns, STANDBY, STANDBY_TEMP, None)]
    prods = plan.productions
    for n, p in enumerate(prods):
        rows.append((p.start_ns, RUN, p.params.temperature, p))
        if p.outcome.fault:
            rows.append((p.end_ns, FAULT, p.params.temperature, p))  # setpoint stays until reset
        if n == len(prods) - 1 and plan.complete:
            rows.append((p.fault_end_ns, STANDBY, STANDBY_TEMP, None))
        else:
            rows.append((p.fault_end_ns, HOLD, p.params.temperature, p))
    return rows


def _table(plan: ShiftPlan, previous: ShiftPlan | None) -> SegmentTable:
    """Segments of the previous shift (for exact continuity at the boundary) and of this shift.

    Lag states start at standby at the first row and are reset to the converged standby value at the
    end of this shift's handover (its first production start): the previous shift's table does the
    same at its own reset, so both tables agree everywhere they overlap.
    """
    prods = plan.productions
    head = _rows(previous) if previous is not None else []
    rows = head + _rows(plan)
    reset = np.zeros(len(rows), dtype=bool)
    if previous is not None and prods:
        reset[len(head) + 1] = True

    def col(fn: Callable, dtype: type = np.float64) -> np.ndarray:
        return np.array([fn(r) for r in rows], dtype=dtype)

    def pcol(fn: Callable, dtype: type = np.float64) -> np.ndarray:
        return col(lambda r: fn(r[3]) if r[3] is not None and r[1] in (RUN, FAULT) else 0, dtype)

    qa_prods = (previous.productions if previous else []) + prods
    return SegmentTable(
        t0=col(lambda r: r[0], np.int64),
        kind=col(lambda r: r[1], np.int8),
        heater_sp=col(lambda r: r[2]),
        temperature=pcol(lambda p: p.params.temperature),
        feed_rate=pcol(lambda p: p.params.feed_rate),
        pressure=pcol(lambda p: p.params.pressure),
        moisture=pcol(lambda p: p.lot.moisture),
        hardness=pcol(lambda p: p.lot.hardness),
        density=pcol(lambda p: p.lot.density),
        impurity=pcol(lambda p: p.lot.impurity),
        production_id=pcol(lambda p: p.production_id),
        set_by_code=pcol(lambda p: p.set_by_code),
        fault_code=pcol(lambda p: p.fault_code),
        prod_start=pcol(lambda p: p.start_ns, np.int64),
        prod_end=pcol(lambda p: p.end_ns, np.int64),
        mismatch=pcol(lambda p: math.sqrt(max(0.0, penalty(p.lot, p.params)))),
        qa_ns=np.array([p.qa_ns for p in qa_prods], dtype=np.int64),
        qa_pid=np.array([p.production_id for p in qa_prods], dtype=np.float64),
        qa_quality=np.array([p.outcome.quality for p in qa_prods], dtype=np.float64),
        reset=reset,
    )


_TABLES: weakref.WeakKeyDictionary[LineTimeline, dict[int, tuple[tuple[int, bool], SegmentTable]]] = (
    weakref.WeakKeyDictionary()
)
_TABLES_LOCK = threading.Lock()


def segment_table(timeline: LineTimeline, shift_index: int, until_ns: int) -> SegmentTable:
    """Segment table of a shift, valid for t < until_ns (cached while the plan is unchanged)."""
    plan = timeline.shift_plan(shift_index, until_ns)
    previous = timeline.shift_plan(shift_index - 1) if shift_index >= 1 else None
    state = (len(plan.productions), plan.complete)
    with _TABLES_LOCK:
        cache = _TABLES.setdefault(timeline, {})
        hit = cache.get(shift_index)
    if hit is not None and hit[0] == state:
        return hit[1]
    table = _table(plan, previous)
    with _TABLES_LOCK:
        if len(cache) > 64:
            cache.clear()
        cache[shift_index] = (state, table)
    return table


class _Frame:
    """Per-sample view of a segment table for one time array (lazy, computed once per call)."""

    def __init__(self, table: SegmentTable, t: np.ndarray) -> None:
        self.s = table
        self.t = t
        self.idx = np.searchsorted(table.t0, t, side="right") - 1
        self.kind = table.kind[self.idx]
        self.run = self.kind == RUN
        self._cache: dict[str, np.ndarray] = {}

    def seg(self, name: str) -> np.ndarray:
        return getattr(self.s, name)[self.idx]

    def lag(self, name: str) -> np.ndarray:
        if name not in self._cache:
            target, x0 = self.s.lag_state(name)
            dt = (self.t - self.s.t0[self.idx]).astype(np.float64)
            tgt = target[self.idx]
            self._cache[name] = tgt + (x0[self.idx] - tgt) * np.exp(
                dt * (-1.0 / (LAGS[name].tau_s * NS_PER_S))
            )
        return self._cache[name]

    def angle_rad(self) -> np.ndarray:
        """Mechanism angle: revolutions at feed_rate strokes/min since production start; home when idle."""
        if "angle" not in self._cache:
            dt = (self.t - self.seg("prod_start")).astype(np.float64) * (1.0 / NS_PER_S)
            rev = dt * self.seg("feed_rate") * (1.0 / 60.0)
            self._cache["angle"] = np.where(self.run, 2.0 * np.pi * (rev - np.floor(rev)), 0.0)
        return self._cache["angle"]

    def to_end_s(self) -> np.ndarray:
        return (self.seg("prod_end") - self.t).astype(np.float64) * (1.0 / NS_PER_S)

    def since_end_s(self) -> np.ndarray:
        return (self.t - self.seg("prod_end")).astype(np.float64) * (1.0 / NS_PER_S)

    def excursion(self, name: str) -> np.ndarray:
        """Over-temperature excursion: ramp before the trip, exponential decay during the fault state."""
        amp = OT_AMPLITUDE.get(name, 0.0)
        ot = self.seg("fault_code") == 2
        if amp == 0.0 or not ot.any():
            return np.zeros(len(self.t))
        before = np.clip(1.0 - self.to_end_s() / OT_RAMP_S, 0.0, 1.0)
        after = np.exp(-np.maximum(self.since_end_s(), 0.0) / OT_DECAY_S)
        shape = np.where(self.run, before, np.where(self.kind == FAULT, after, 0.0))
        return np.where(ot, amp * shape, 0.0)

    def motor_current(self) -> np.ndarray:
        if "motor_current" not in self._cache:
            f, p, h = self.seg("feed_rate"), self.seg("pressure"), self.seg("hardness")
            load = 0.011 * h * f * (0.6 + 0.4 * p / 100.0) * (1.0 + 0.15 * self.seg("mismatch"))
            running = 4.0 + load * (1.0 + 0.3 * np.sin(self.angle_rad()))
            oc = (self.seg("fault_code") == 1) & self.run
            spike = 1.0 + OC_SPIKE * np.clip(1.0 - self.to_end_s() / OC_RAMP_S, 0.0, 1.0)
            running = np.where(oc, running * spike, running)
            self._cache["motor_current"] = np.where(self.run, running, np.where(self.kind == FAULT, 0.3, 1.5))
        return self._cache["motor_current"]

    def vibration_rms(self) -> np.ndarray:
        run = 0.4 + 0.015 * self.seg("feed_rate") + 0.25 * self.seg("mismatch")
        return np.where(self.run, run, np.where(self.kind == FAULT, 0.1, 0.05))


def _season_and_hour(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    days = (t - ORIGIN_NS).astype(np.float64) * (1.0 / DAY_NS)
    season = 2.0 * np.pi * np.mod(days, YEAR_DAYS) / YEAR_DAYS
    day_phase = 2.0 * np.pi * (days - np.floor(days))
    return season, day_phase


def _ambient(f: _Frame) -> np.ndarray:
    season, day = _season_and_hour(f.t)
    return 21.0 + 3.0 * np.sin(day - 2.0 * np.pi * 9.0 / 24.0) + 4.0 * np.sin(season - 1.6)


def _humidity(f: _Frame) -> np.ndarray:
    season, day = _season_and_hour(f.t)
    return 45.0 + 12.0 * np.sin(season - 1.6) - 8.0 * np.sin(day - 2.0 * np.pi * 9.0 / 24.0)


def _power(f: _Frame) -> np.ndarray:
    t_sp, fr, p, h = f.seg("temperature"), f.seg("feed_rate"), f.seg("pressure"), f.seg("hardness")
    run = (5.0 + 0.04 * (t_sp - 20.0) + 0.0025 * h * fr + 0.03 * p) * (1.0 + 0.05 * np.sin(f.angle_rad()))
    idle = 2.0 + 0.025 * (f.seg("heater_sp") - 20.0)
    return np.where(f.run, run, np.where(f.kind == FAULT, 1.0, idle))


def _temperature(name: str) -> Callable[[_Frame], np.ndarray]:
    return lambda f: f.lag(name) + f.excursion(name)


def _in_production(field_name: str) -> Callable[[_Frame], np.ndarray]:
    return lambda f: f.seg(field_name)


def _qa(column: str) -> Callable[[_Frame], np.ndarray]:
    def values(f: _Frame) -> np.ndarray:
        i = np.searchsorted(f.s.qa_ns, f.t, side="right") - 1
        col = getattr(f.s, column)
        if len(col) == 0:
            return np.zeros(len(f.t))
        return np.where(i >= 0, col[np.maximum(i, 0)], 0.0)

    return values


SIGNALS: dict[str, Callable[[_Frame], np.ndarray]] = {
    "machine_state": lambda f: np.where(f.kind == FAULT, 2.0, np.where(f.run, 1.0, 0.0)),
    "temp_zone1": _temperature("temp_zone1"),
    "temp_zone2": _temperature("temp_zone2"),
    "temp_zone3": _temperature("temp_zone3"),
    "temp_die": _temperature("temp_die"),
    "mech_angle": lambda f: np.degrees(f.angle_rad()),
    "mech_position": lambda f: 50.0 * (1.0 - np.cos(f.angle_rad())),
    "motor_current": lambda f: f.motor_current(),
    "feed_motor_current": lambda f: np.where(f.run, 1.0 + 0.08 * f.seg("feed_rate") * f.seg("density"), 0.5),
    "vibration_rms": lambda f: f.vibration_rms(),
    "vibration_peak": lambda f: f.vibration_rms() * (2.2 + 0.6 * np.abs(np.sin(2.0 * f.angle_rad()))),
    "pressure_actual": lambda f: f.lag("pressure_actual"),
    "feed_rate_actual": lambda f: f.lag("feed_rate_actual"),
    "torque": lambda f: np.where(f.run, 1.6 * (f.motor_current() - 1.5), 0.0),
    "motor_speed": lambda f: GEAR_RATIO * f.lag("feed_rate_actual"),
    "coolant_temp": lambda f: f.lag("coolant_temp"),
    "ambient_temp": _ambient,
    "humidity": _humidity,
    "power_kw": _power,
    "material_temp": _temperature("material_temp"),
    "sp_temperature": _in_production("heater_sp"),
    "sp_feed_rate": _in_production("feed_rate"),
    "sp_pressure": _in_production("pressure"),
    "lot_moisture": _in_production("moisture"),
    "lot_hardness": _in_production("hardness"),
    "lot_density": _in_production("density"),
    "lot_impurity": _in_production("impurity"),
    "production_id": _in_production("production_id"),
    "set_by": _in_production("set_by_code"),
    "qa_production_id": _qa("qa_pid"),
    "qa_quality": _qa("qa_quality"),
    "fault_code": lambda f: np.where(f.kind == FAULT, f.seg("fault_code"), 0.0),
}


def _extra_band(k: int) -> Callable[[_Frame], np.ndarray]:
    weight = 0.8 / (1.0 + 0.15 * k)
    return lambda f: f.vibration_rms() * weight * (1.0 + 0.3 * np.sin(k * f.angle_rad()))


def _signal_fn(name: str) -> Callable[[_Frame], np.ndarray]:
    if name in SIGNALS:
        return SIGNALS[name]
    if name.startswith(EXTRA_PREFIX) and name[len(EXTRA_PREFIX) :].isdigit():
        return _extra_band(int(name[len(EXTRA_PREFIX) :]))
    raise KeyError(f"channel: no signal model for {name!r}")


def noise_std(name: str) -> float:
    """Measurement-noise std dev of channel ``name`` (0 for exact/discrete channels)."""
    if name.startswith(EXTRA_PREFIX):
        return EXTRA_NOISE_STD
    return NOISE_STD.get(name, 0.0)


def clean_values(timeline: LineTimeline, name: str, t_ns: np.ndarray) -> np.ndarray:
    """Noise-free value of channel ``name`` at sorted times ``t_ns`` (int64)."""
    fn = _signal_fn(name)
    t = np.asarray(t_ns, dtype=np.int64)
    out = np.empty(len(t), dtype=np.float64)
    if len(t) == 0:
        return out
    first, last = shift_index_at(int(t[0])), shift_index_at(int(t[-1]))
    bounds = [shift_start_ns(k) for k in range(first + 1, last + 1)]
    cuts = [0, *np.searchsorted(t, bounds, side="left").tolist(), len(t)]
    for k, (a, b) in zip(range(first, last + 1), itertools.pairwise(cuts), strict=True):
        if a == b:
            continue
        table = segment_table(timeline, k, int(t[b - 1]) + 1)
        out[a:b] = fn(_Frame(table, t[a:b]))
    return out


def generate(
    timeline: LineTimeline, channel: Channel, seq_start: int, seq_end: int
) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``seq_start`` .. ``seq_end - 1`` of ``channel``: (t_ns int64, values float64).

    Bit-identical for the same (seed, line, channel, seq) whoever calls it and however the range is
    split.
    """
    if seq_start < 0:
        raise ValueError(
            f"seq_start: must be >= 0 (seq 0 is at ORIGIN_NS, 2026-01-01T00:00Z), got {seq_start}"
        )
    if seq_end < seq_start:
        raise ValueError(f"seq_end: must be >= seq_start ({seq_start}), got {seq_end}")
    seq = np.arange(seq_start, seq_end, dtype=np.int64)
    t = ORIGIN_NS + seq * np.int64(channel.period_ns)
    values = clean_values(timeline, channel.name, t)
    std = noise_std(channel.name)
    if std > 0.0 and len(seq):
        key = derive_key(timeline.cfg.seed, timeline.line, "noise", channel.name)
        values += std * gauss_array(key, seq)
        if channel.name in NON_NEGATIVE or channel.name.startswith(EXTRA_PREFIX):
            np.maximum(values, 0.0, out=values)
        elif channel.name == "mech_angle":
            np.mod(values, 360.0, out=values)
    return t, values
