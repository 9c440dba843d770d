"""Load the raw objects and gap records covering a time window of one line.

Why hour prefixes: a key's hour is that of the object's earliest sample, so listing the hours of the
window (plus `lookback_s` before it, for objects that started earlier) reads only what is needed.
Corrupt objects are quarantined and reported, never raised: other objects (and partitions) proceed.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from factory_assets.raw.quarantine import quarantine
from factory_core.layout import date_prefix, hour_prefix, parse_key
from factory_core.rawformat import GapRecord, RawBatch, RawFormatError, decode_batch, decode_gaps
from factory_core.store import ObjectStore

NS_PER_S = 1_000_000_000
HOUR_NS = 3600 * NS_PER_S


@dataclass
class WindowData:
    """Decoded objects of a window: batches by key, gaps, and the objects that were quarantined."""

    batches: list[tuple[str, RawBatch]] = field(default_factory=list)
    gaps: list[GapRecord] = field(default_factory=list)
    gap_keys: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


def _utc(t_ns: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=t_ns // 1000)


def raw_keys_in_window(store: ObjectStore, line: str, t0_ns: int, t1_ns: int, lookback_s: int) -> list[str]:
    """Raw keys whose earliest sample lies in [t0 - lookback, t1), sorted."""
    lo = t0_ns - lookback_s * NS_PER_S
    keys: list[str] = []
    hour = (lo // HOUR_NS) * HOUR_NS
    while hour < t1_ns:
        ts = _utc(hour)
        for key in store.list(hour_prefix(line, ts.date(), ts.hour)):
            info = parse_key(key)
            if info.start_ns is not None and lo <= info.start_ns < t1_ns:
                keys.append(key)
        hour += HOUR_NS
    return sorted(keys)


def load_window(
    store: ObjectStore,
    line: str,
    t0_ns: int,
    t1_ns: int,
    lookback_s: int,
    gap_dates: list[dt.date],
    workers: int = 4,
) -> WindowData:
    """Decode raw objects starting in the window and the gap objects of `gap_dates`."""
    out = WindowData()

    def fetch(key: str) -> tuple[str, bytes, RawBatch | None, str | None]:
        data = store.get(key)
        try:
            batch = decode_batch(data)
            if batch.line != line:
                raise RawFormatError(f"object line {batch.line!r} differs from the key's line {line!r}")
        except RawFormatError as exc:
            return key, data, None, str(exc)
        return key, data, batch, None

    # zstd, SHA-256 and S3 reads release the GIL: a few threads overlap them.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for key, data, batch, error in pool.map(
            fetch, raw_keys_in_window(store, line, t0_ns, t1_ns, lookback_s)
        ):
            if batch is None:
                quarantine(store, key, data, str(error))
                out.quarantined.append((key, str(error)))
            else:
                out.batches.append((key, batch))
    for date in gap_dates:
        for key in store.list(date_prefix("gaps", line, date)):
            data = store.get(key)
            try:
                gaps = decode_gaps(data)
            except RawFormatError as exc:
                quarantine(store, key, data, str(exc))
                out.quarantined.append((key, str(exc)))
                continue
            out.gap_keys.append(key)
            out.gaps.extend(gaps)
    return out
