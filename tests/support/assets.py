"""Shared data for the factory_assets tests: a small simulated history and helpers around it.

Test data comes from `factory-sim history` (the same raw format and key layout as the edge collector),
at a 1 Hz fast rate so a whole line-day stays small.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from factory_assets.production.compute import day_bounds
from factory_core.layout import batch_key
from factory_core.rawformat import ChannelBlock, RawBatch, encode_batch
from factory_core.store import ObjectStore
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
