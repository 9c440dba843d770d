"""Vectorized reconstruction of productions and their per-channel features from raw batches.

Why vectorized: a line-day is ~20 fast channels x 864,000 samples; per-sample Python is far too slow.
Channels are concatenated with numpy (deduplicated by seq), productions are segmented on the
production_id channel's transitions, and per-production statistics use np.searchsorted to place samples
and np.bincount / np.minimum.reduceat over the contiguous sample ranges.

Timing rule: a production's id is on the production_id channel from its start until its fault state is
cleared; `start` is the first machine_state sample in RUNNING (1) and `end` the first one after that is not
RUNNING (idle, or fault: the fault instant), i.e. both on the fast channel's grid (100 ms at 10 Hz). Without
machine_state the production_id grid is used. A production belongs to the day of its `start`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import polars as pl

from factory_core.machine import (
    FAULT_NAMES,
    LOT_COLUMN,
    SETPOINT_COLUMN,
    over_temperature_alarm,
    set_by_label,
)
from factory_core.rawformat import RawBatch

NS_PER_S = 1_000_000_000
STATS = ("mean", "min", "max", "std", "slope")
LOT_COLUMNS = tuple(LOT_COLUMN.values())
PARAM_COLUMNS = tuple(SETPOINT_COLUMN.values())
SLOW_CHANNELS = (
    *PARAM_COLUMNS,
    *LOT_COLUMNS,
    "production_id",
    "set_by",
    "qa_production_id",
    "qa_quality",
    "fault_code",
)
"""Channels read as production attributes, not summarised as features."""


@dataclass(frozen=True)
class Series:
    """One channel's samples, sorted by seq, duplicates removed."""

    t_ns: np.ndarray
    values: np.ndarray
    period_ns: int


def concat_channels(batches: Iterable[RawBatch]) -> dict[str, Series]:
    """Concatenate each channel's blocks across objects; overlapping objects are deduplicated by seq."""
    parts: dict[str, list] = defaultdict(list)
    rates: dict[str, float] = {}
    for batch in batches:
        for b in batch.blocks:
            if b.count:
                parts[b.name].append(b)
                rates[b.name] = b.rate_hz
    out: dict[str, Series] = {}
    shared_t: dict[tuple, np.ndarray] = {}  # channels sampled together share one timestamp array
    for name, blocks in parts.items():
        blocks.sort(key=lambda b: b.first_seq)
        v = np.concatenate([b.values for b in blocks])
        layout = (rates[name], tuple((b.first_seq, b.count, int(b.t_ns[0])) for b in blocks))
        t = shared_t.get(layout)
        if t is None:
            t = shared_t[layout] = np.concatenate([b.t_ns for b in blocks])
        overlapping = any(b.first_seq < a.first_seq + a.count for a, b in pairwise(blocks))
        if overlapping:  # re-sent samples: keep one per seq
            seq = np.concatenate(
                [np.arange(b.first_seq, b.first_seq + b.count, dtype=np.int64) for b in blocks]
            )
            seq, idx = np.unique(seq, return_index=True)
            t, v = t[idx], v[idx]
        out[name] = Series(t, v, round(NS_PER_S / rates[name]))
    return out


def segment_productions(pid: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, start_ns, end_ns) of runs of a non-zero production_id; runs split by data gaps are merged.

    A run is only reported once a later sample shows it ended (end is the first sample after the run) and
    when an earlier sample shows it had not started yet.
    """
    ids = np.rint(pid.values).astype(np.int64)
    n = len(ids)
    if n == 0:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    change = np.flatnonzero(np.diff(ids) != 0) + 1
    starts_idx = np.concatenate(([0], change))
    ends_idx = np.concatenate((change, [n]))  # exclusive
    run_ids = ids[starts_idx]
    # The last run may still be going (not finished yet); the first one may have started before the data.
    keep = (run_ids != 0) & (ends_idx < n) & (starts_idx > 0)
    starts_idx, ends_idx, run_ids = starts_idx[keep], ends_idx[keep], run_ids[keep]
    run_start = pid.t_ns[starts_idx]
    run_end = pid.t_ns[ends_idx - 1] + pid.period_ns
    if len(run_ids) == 0:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    uniq, inv = np.unique(run_ids, return_inverse=True)
    start = np.full(len(uniq), np.iinfo(np.int64).max)
    end = np.full(len(uniq), np.iinfo(np.int64).min)
    np.minimum.at(start, inv, run_start)
    np.maximum.at(end, inv, run_end)
    order = np.argsort(start, kind="stable")
    return uniq[order], start[order], end[order]


def refine_run_bounds(
    state: Series | None, id_start: np.ndarray, id_end: np.ndarray, id_period_ns: int
) -> tuple[np.ndarray, np.ndarray]:
    """RUNNING span per production on the machine_state grid (first 1, first non-1 after it).

    The run starts after the previous slow sample without the id, so the search starts one slow period
    before the id's first sample. Falls back to the id span where machine_state has no samples.
    """
    start, end = id_start.copy(), id_end.copy()
    if state is None or len(state.t_ns) == 0 or len(id_start) == 0:
        return start, end
    values = np.rint(state.values)
    running = np.flatnonzero(values == 1)
    other = np.flatnonzero(values != 1)
    if len(running) == 0:
        return start, end
    lo = np.searchsorted(state.t_ns, id_start - id_period_ns, side="right")
    j = np.searchsorted(running, lo)
    ok = j < len(running)
    first_run = running[np.minimum(j, len(running) - 1)]
    ok &= state.t_ns[first_run] < id_end
    k = np.searchsorted(other, first_run)
    has_end = k < len(other)
    after = other[np.minimum(k, max(len(other) - 1, 0))] if len(other) else first_run
    ok &= has_end
    start[ok] = state.t_ns[first_run[ok]]
    end[ok] = state.t_ns[after[ok]]
    return start, end


def _value_at(series: Series | None, t_ns: np.ndarray) -> np.ndarray:
    """Value of the sample at or after each t (NaN where there is none)."""
    out = np.full(len(t_ns), np.nan)
    if series is None or len(series.t_ns) == 0:
        return out
    idx = np.searchsorted(series.t_ns, t_ns, side="left")
    ok = idx < len(series.t_ns)
    out[ok] = series.values[idx[ok]]
    return out


def _qa(series_id: Series | None, series_q: Series | None, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(quality, published_at_ns) per production from the qa_production_id/qa_quality pair (NaN/-1 if not yet)."""
    quality = np.full(len(ids), np.nan)
    at = np.full(len(ids), -1, np.int64)
    if series_id is None or series_q is None or len(series_id.t_ns) == 0:
        return quality, at
    qid = np.rint(series_id.values).astype(np.int64)
    first = np.concatenate(([True], np.diff(qid) != 0))
    qi = np.flatnonzero(first & (qid != 0))
    qa_ids, first_pos = np.unique(qid[qi], return_index=True)
    pos = qi[first_pos]
    where = np.searchsorted(qa_ids, ids)
    where = np.clip(where, 0, max(len(qa_ids) - 1, 0))
    found = (len(qa_ids) > 0) & (qa_ids[where] == ids) if len(qa_ids) else np.zeros(len(ids), bool)
    t_pub = series_id.t_ns[pos[where[found]]]
    quality[found] = _value_at(series_q, t_pub)
    at[found] = t_pub
    return quality, at


@dataclass(frozen=True)
class _Grid:
    """Per-timestamp-array work shared by every channel sampled on it (all fast channels)."""

    bounds: np.ndarray  # interleaved i0, i1 of non-empty segments (a final i1 == len is dropped)
    has: np.ndarray  # segments with at least one sample
    n: np.ndarray
    xs: np.ndarray  # seconds since the first sample
    xm: np.ndarray
    cxx: np.ndarray


def _grid(t: np.ndarray, start: np.ndarray, end: np.ndarray) -> _Grid:
    i0 = np.searchsorted(t, start, side="left")
    i1 = np.searchsorted(t, end, side="left")
    has = (i1 - i0) > 0
    i0, i1 = i0[has], i1[has]
    bounds = np.empty(2 * len(i0), np.int64)
    bounds[0::2], bounds[1::2] = i0, i1
    if len(bounds) and bounds[-1] == len(t):
        bounds = bounds[:-1]  # reduceat's last segment runs to the end of the array anyway
    n = (i1 - i0).astype(np.float64)
    xs = (t - t[0]) / NS_PER_S
    xm = np.add.reduceat(xs, bounds)[0::2] / n if len(bounds) else n
    sxx = np.add.reduceat(xs * xs, bounds)[0::2] if len(bounds) else n
    return _Grid(bounds, has, n, xs, xm, sxx - n * xm * xm)


def _segment_stats(
    series: Series, start: np.ndarray, end: np.ndarray, limit: np.ndarray | None, cache: dict | None = None
) -> dict[str, np.ndarray]:
    """mean/min/max/std/slope (+ seconds above `limit`, one limit per segment) of each [start, end) range.

    Segments are disjoint index ranges [i0, i1) of the channel, so every statistic is a ufunc.reduceat
    over the interleaved boundaries (i0, i1, i0, i1, ...) taking every other result. Sums use values
    shifted by the channel's first value and times relative to the first sample (no cancellation).
    """
    k = len(start)
    res = {s: np.full(k, np.nan) for s in STATS}
    if limit is not None:
        res["s_above_limit"] = np.zeros(k)
    t, v = series.t_ns, series.values
    if k == 0 or len(t) == 0:
        return res
    key = (id(t), len(t))
    g = cache.get(key) if cache is not None else None
    if g is None:
        g = _grid(t, start, end)
        if cache is not None:
            cache[key] = g
    if not g.has.any():
        return res
    b, n = g.bounds, g.n
    vs = v - v[0]
    mean_s = np.add.reduceat(vs, b)[0::2] / n
    var = np.maximum(np.add.reduceat(vs * vs, b)[0::2] / n - mean_s * mean_s, 0.0)
    cxv = np.add.reduceat(g.xs * vs, b)[0::2] - n * g.xm * mean_s
    res["mean"][g.has] = mean_s + v[0]
    res["std"][g.has] = np.sqrt(var)
    res["min"][g.has] = np.minimum.reduceat(v, b)[0::2]
    res["max"][g.has] = np.maximum.reduceat(v, b)[0::2]
    slope = np.full(len(n), np.nan)
    ok = g.cxx > 1e-12
    slope[ok] = cxv[ok] / g.cxx[ok]
    res["slope"][g.has] = slope
    if limit is not None:
        # One limit per segment (it follows the production's setpoint): count per slice; a NaN limit
        # (setpoint unknown) counts nothing.
        i0, i1 = np.searchsorted(t, start), np.searchsorted(t, end)
        above = [np.count_nonzero(v[a:z] > lim) for a, z, lim in zip(i0, i1, limit, strict=True)]
        res["s_above_limit"] = np.asarray(above, np.float64) * series.period_ns / NS_PER_S
    return res


def alarm_limits(channel: str, setpoints: np.ndarray) -> np.ndarray | None:
    """Per-production over-temperature alarm limit of `channel` (None: no alarm on this channel)."""
    if over_temperature_alarm(channel, 0.0) is None:
        return None
    return np.array([over_temperature_alarm(channel, float(sp)) for sp in setpoints], np.float64)


def productions_frame(
    line: str, channels: dict[str, Series], day_start_ns: int | None = None, day_end_ns: int | None = None
) -> pl.DataFrame:
    """One row per production starting in [day_start, day_end) (all when None), ordered by id."""
    pid = channels.get("production_id")
    if pid is None:
        return empty_frame(channels)
    ids, start, end = segment_productions(pid)
    keep = np.ones(len(ids), bool)
    if day_start_ns is not None:
        keep &= start >= day_start_ns
    if day_end_ns is not None:
        keep &= start < day_end_ns
    ids, start, end = ids[keep], start[keep], end[keep]
    order = np.argsort(ids, kind="stable")
    ids, id_start, id_end = ids[order], start[order], end[order]
    start, end = refine_run_bounds(channels.get("machine_state"), id_start, id_end, pid.period_ns)
    cols: dict[str, object] = {
        "line": [line] * len(ids),
        "production_id": ids,
        "start": start,
        "end": end,
    }
    for name in LOT_COLUMNS + PARAM_COLUMNS:
        cols[name] = _value_at(channels.get(name), start)
    codes = np.rint(np.nan_to_num(_value_at(channels.get("set_by"), start))).astype(np.int64)
    cols["set_by_code"] = codes
    cols["set_by"] = [set_by_label(int(c)) for c in codes]
    quality, qa_at = _qa(channels.get("qa_production_id"), channels.get("qa_quality"), ids)
    cols["qa_quality"] = quality
    cols["qa_at"] = qa_at
    cols["cycle_time_s"] = (end - start) / NS_PER_S
    power = channels.get("power_kw")
    if power is not None:
        st = _segment_stats(power, start, end, None)
        n = np.round((end - start) / power.period_ns)
        cols["energy_kwh"] = np.where(
            np.isnan(st["mean"]), np.nan, st["mean"] * n * power.period_ns / NS_PER_S / 3600
        )
    else:
        cols["energy_kwh"] = np.full(len(ids), np.nan)
    fault = channels.get("fault_code")
    fcode = np.zeros(len(ids), np.int64)
    if fault is not None and len(ids):
        # The fault code is raised at the fault instant (the run's end) until the fault is cleared,
        # while the production id is still on: look over the id's whole span.
        st = _segment_stats(fault, id_start, id_end, None)
        fcode = np.rint(np.nan_to_num(st["max"])).astype(np.int64)
    cols["fault_code"] = fcode
    cols["fault"] = [FAULT_NAMES.get(int(c), f"code_{int(c)}") for c in fcode]
    grids: dict = {}
    for name in fast_channel_names(channels):
        limits = alarm_limits(name, np.asarray(cols[SETPOINT_COLUMN["temperature"]], np.float64))
        st = _segment_stats(channels[name], start, end, limits, grids)
        for stat, arr in st.items():
            cols[f"{name}_{stat}"] = arr
    return _typed(pl.DataFrame(cols))


def fast_channel_names(channels: dict[str, Series]) -> list[str]:
    """Fast channels in a stable order: the fixed catalogue order first, extras sorted by name."""
    return sorted((n for n in channels if n not in SLOW_CHANNELS), key=_channel_order)


_FAST_ORDER = (
    "machine_state", "temp_zone1", "temp_zone2", "temp_zone3", "temp_die", "mech_angle", "mech_position",
    "motor_current", "feed_motor_current", "vibration_rms", "vibration_peak", "pressure_actual",
    "feed_rate_actual", "torque", "motor_speed", "coolant_temp", "ambient_temp", "humidity", "power_kw",
    "material_temp",
)  # fmt: skip


def _channel_order(name: str) -> tuple[int, str]:
    return (_FAST_ORDER.index(name), "") if name in _FAST_ORDER else (len(_FAST_ORDER), name)


def _typed(df: pl.DataFrame) -> pl.DataFrame:
    """Fix dtypes: ns UTC datetimes, nullable QA, NaN -> null for floats (Parquet-friendly)."""
    ts = pl.Datetime("ns", "UTC")
    df = df.with_columns(
        pl.col("production_id").cast(pl.Int64),
        pl.col("start").cast(ts),
        pl.col("end").cast(ts),
        pl.when(pl.col("qa_at") >= 0).then(pl.col("qa_at")).otherwise(None).cast(ts).alias("qa_at"),
        pl.col("set_by_code").cast(pl.Int32),
        pl.col("fault_code").cast(pl.Int32),
    )
    floats = [c for c, t in df.schema.items() if t == pl.Float64]
    return df.with_columns([pl.col(c).fill_nan(None) for c in floats])


def empty_frame(channels: dict[str, Series]) -> pl.DataFrame:
    """A zero-row frame with the full schema (so empty days still have a typed file)."""
    empty = Series(np.empty(0, np.int64), np.empty(0), NS_PER_S)
    return productions_frame("", {**channels, "production_id": empty}).clear()
