"""Build one line-day's production table from the object store (no Dagster here: testable, benchmarkable).

Window rule: a production belongs to the day of its start. The day's table reads objects starting from
`lookback_s` before midnight (to see whether the first run started the previous day) up to `lookahead_s`
after the next midnight (to complete a run straddling midnight and catch its QA, published after it ends).
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from factory_assets.production.extraction import Series, concat_channels, productions_frame
from factory_assets.raw.reading import NS_PER_S, load_window
from factory_core.rawformat import GapRecord
from factory_core.store import ObjectStore

DAY_NS = 86_400 * NS_PER_S
DEFAULT_LOOKBACK_S = 3600
DEFAULT_LOOKAHEAD_S = 3600  # max cycle 1200 s + fault clear 120 s + QA delay <= 90 s, with margin


@dataclass
class DayResult:
    """A line-day's table plus what the UI and the checks need to know about its inputs."""

    line: str
    date: str
    frame: pl.DataFrame
    objects: int
    gap_objects: int
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    missing_s: dict[str, float] = field(default_factory=dict)  # per channel, not covered nor recorded
    channels: int = 0
    running_at_midnight: bool = False  # a production still running at the end of the data after midnight
    qa_pending: int = 0  # productions of the day whose QA has not been published yet (and still can be)

    @property
    def covered(self) -> bool:
        """Every channel covered to the end of the day, or its missing span recorded as a gap."""
        return self.channels > 0 and not any(v > 0 for v in self.missing_s.values())

    @property
    def complete(self) -> bool:
        """Covered, and every production of the day has ended and has its QA (nothing will change)."""
        return self.covered and not self.running_at_midnight and self.qa_pending == 0


def day_bounds(date: str) -> tuple[int, int]:
    """[midnight, next midnight) of a UTC date in ns."""
    d = dt.date.fromisoformat(date)
    t0 = int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * NS_PER_S
    return t0, t0 + DAY_NS


def coverage_missing(
    channels: dict[str, Series], gaps: list[GapRecord], t0: int, t1: int
) -> dict[str, float]:
    """Seconds of [t0, t1) per channel with neither a sample nor a recorded gap."""
    out: dict[str, float] = {}
    by_channel: dict[str, list[GapRecord]] = {}
    for g in gaps:
        by_channel.setdefault(g.channel_name, []).append(g)
    for name, s in channels.items():
        p = s.period_ns
        phase = int(s.t_ns[0]) % p if len(s.t_ns) else 0
        first = t0 + ((phase - t0) % p)  # first grid point >= t0
        n = 0 if first >= t1 else (t1 - 1 - first) // p + 1
        i0, i1 = np.searchsorted(s.t_ns, [t0, t1])
        if name not in by_channel:  # samples are unique per seq and on the grid: a count suffices
            out[name] = float((n - int(i1 - i0)) * p / NS_PER_S)
            continue
        covered = np.zeros(n, bool)
        covered[(s.t_ns[i0:i1] - first) // p] = True
        for g in by_channel.get(name, []):
            # Lost samples sit on the channel grid: lost_from_ns + k * period, k < lost count.
            off = (g.lost_from_ns - first) // p
            lo, hi = max(0, off), min(n, off + (g.lost_to_seq - g.lost_from_seq))
            if hi > lo:
                covered[lo:hi] = True
        out[name] = float((n - int(covered.sum())) * p / NS_PER_S)
    return out


def build_day(
    store: ObjectStore,
    line: str,
    date: str,
    lookback_s: int = DEFAULT_LOOKBACK_S,
    lookahead_s: int = DEFAULT_LOOKAHEAD_S,
) -> DayResult:
    """Read the window around one line-day and return its productions and completeness."""
    t0, t1 = day_bounds(date)
    d = dt.date.fromisoformat(date)
    # Gap objects are keyed by their first lost sample's date: one starting the day before may reach into d.
    gap_dates = [d - dt.timedelta(days=1), d]
    window = load_window(store, line, t0, t1 + lookahead_s * NS_PER_S, lookback_s, gap_dates=gap_dates)
    channels = concat_channels(b for _, b in window.batches)
    frame = productions_frame(line, channels, t0, t1)
    day_only = {name: _clip(s, t0, t1) for name, s in channels.items()}
    missing = coverage_missing(day_only, window.gaps, t0, t1)
    running = _running_at_midnight(channels.get("production_id"), frame, t1)
    return DayResult(
        line=line,
        date=date,
        frame=frame,
        objects=len(window.batches),
        gap_objects=len(window.gap_keys),
        quarantined=window.quarantined,
        missing_s=missing,
        channels=len(channels),
        running_at_midnight=running,
        qa_pending=_qa_pending(channels.get("qa_production_id"), frame),
    )


def _qa_pending(qa_ids: Series | None, frame: pl.DataFrame) -> int:
    """Productions without QA that may still get one: QA is published in production order, so once a
    later production's QA has been seen, a missing QA was lost (inside a recorded gap), not pending."""
    if frame.height == 0:
        return 0
    latest = float(np.nanmax(qa_ids.values)) if qa_ids is not None and len(qa_ids.values) else 0.0
    missing = frame.filter(pl.col("qa_quality").is_null())["production_id"]
    return int((missing > latest).sum())


def _running_at_midnight(pid: Series | None, frame: pl.DataFrame, t1: int) -> bool:
    """True if the production running at the day's last sample started that day and is not finished."""
    if pid is None or len(pid.t_ns) == 0:
        return False
    i = int(np.searchsorted(pid.t_ns, t1, side="left")) - 1
    if i < 0:
        return False
    current = round(float(pid.values[i]))
    if current == 0:
        return False
    started_before_day = frame.height == 0 or current not in set(frame["production_id"].to_list())
    # Not in the table: either it started the day before (not ours) or it has not ended yet (ours, pending).
    return started_before_day and bool(np.all(np.rint(pid.values[i:]) == current))


def _clip(s: Series, t0: int, t1: int) -> Series:
    i0, i1 = np.searchsorted(s.t_ns, [t0, t1])
    return Series(s.t_ns[i0:i1], s.values[i0:i1], s.period_ns)


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    """Deterministic Parquet: rows already ordered by production_id, no statistics timestamps, fixed codec."""
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", compression_level=3, statistics=True, use_pyarrow=False)
    return buf.getvalue()
