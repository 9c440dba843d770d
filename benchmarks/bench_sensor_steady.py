"""Benchmark: the raw sensor's CPU per tick in steady state, ten lines at 60-second objects (goal < 5 %).

Setup (not timed): `factory-sim history` writes yesterday and today of ten lines as 60-second objects
into a staging directory; everything that started before today's `--at` hour is linked into the store
and recorded (the sensor ticked until it finds nothing new), as a sensor that has kept up would have.
Timed: `--ticks` ticks, each after the next minute's objects of every line landed (ten new objects, one
per line: the rate of 60-second objects; at the sensor's 30 s interval half the real ticks find nothing,
so this is an upper bound), and as many quiet ticks (nothing new). Per tick the whole sensor evaluation
is measured (listing today's and yesterday's prefixes of every line, header reads, manifests, events)
plus reporting its events to the instance, as process CPU time (all threads). Fraction of one core =
CPU per tick / the sensor's 30 s interval. Both instance storages in the same run.

The objects are written at 1 Hz instead of 10 Hz: the sensor reads headers only, whose size does not
depend on the rate (the body it never reads is 10x smaller), and the history takes minutes, not an hour.

    .venv/bin/python -m benchmarks.bench_sensor_steady [--lines 10] [--ticks 20] [--storages sqlite,postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_backfill import instance_home

ROOT = Path(__file__).resolve().parents[1]
INTERVAL_S = 30  # the raw sensor's minimum_interval_seconds


def _link_until(
    staging: Path, store: Path, lines: list[str], until: dt.datetime, since: dt.datetime | None
) -> int:
    """Hard-link every raw object of `lines` whose start lies in [since, until) into the store."""
    from factory_core.layout import parse_key
    from factory_core.store import LocalDirStore

    src = LocalDirStore(staging)
    n = 0
    lo = int(since.timestamp() * 1e9) if since else -1
    hi = int(until.timestamp() * 1e9)
    for line in lines:
        for day in {until.date() - dt.timedelta(days=1), until.date()}:
            for key in src.list(f"raw/line={line}/date={day.isoformat()}/"):
                info = parse_key(key)
                if info.start_ns is not None and lo <= info.start_ns < hi:
                    target = store / key
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.link(staging / key, target)
                        n += 1
    return n


def child(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance, build_sensor_context

    from factory_assets.onboard import record_history
    from factory_assets.raw.sensors import build_raw_objects_sensor
    from factory_assets.resources import LocalObjectStoreResource

    lines = args.line_names.split(",")
    staging, store = Path(args.staging), Path(args.store)
    today = dt.date.fromisoformat(args.today)
    at = dt.datetime(today.year, today.month, today.day, args.at, tzinfo=dt.UTC)
    resource = LocalObjectStoreResource(root=str(store))
    sensor = build_raw_objects_sensor(lines=lines, today=lambda: today)
    out: dict[str, Any] = {"storage": args.storage}
    with DagsterInstance.get() as instance:
        primed = _link_until(staging, store, lines, at, None)
        stats = record_history(instance, resource, lines, today, max_keys_per_tick=5000)
        out["primed_objects"] = primed
        cursor = stats.cursor
        busy: list[tuple[float, float, int]] = []
        quiet: list[tuple[float, float, int]] = []
        for k in range(args.ticks):
            for series, new in ((busy, True), (quiet, False)):
                if new:
                    lo = at + dt.timedelta(minutes=k)
                    _link_until(staging, store, lines, lo + dt.timedelta(minutes=1), lo)
                cpu0, t0 = time.process_time(), time.perf_counter()
                ctx = build_sensor_context(
                    instance=instance, cursor=cursor, resources={"object_store": resource}
                )
                result = sensor(ctx)
                for event in result.asset_events:
                    instance.report_runless_asset_event(event)
                cursor = result.cursor
                series.append(
                    (time.process_time() - cpu0, time.perf_counter() - t0, len(result.asset_events))
                )
        for name, series in (("tick_with_new_objects", busy), ("quiet_tick", quiet)):
            cpu = statistics.median(c for c, _, _ in series)
            out[name] = {"cpu_s_median": round(cpu, 4), "cpu_s_max": round(max(c for c, _, _ in series), 4),
                         "wall_s_median": round(statistics.median(w for _, w, _ in series), 4),
                         "events_per_tick": round(statistics.mean(e for _, _, e in series), 1),
                         "core_fraction_at_30s": round(cpu / INTERVAL_S, 4)}  # fmt: skip
        out["cursor_bytes"] = len(cursor or "")
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=10)
    p.add_argument("--ticks", type=int, default=20)
    p.add_argument("--at", type=int, default=12, help="UTC hour of today the steady state is measured at")
    p.add_argument("--today", default="2026-07-01")
    p.add_argument("--staging", help="a history written before (else written to a temporary directory)")
    p.add_argument("--storages", default="sqlite,postgres")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--storage", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--line-names", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    lines = [f"L{i + 1}" for i in range(args.lines)]
    today = dt.date.fromisoformat(args.today)
    work = Path(tempfile.mkdtemp(prefix="bench-sensor-"))
    try:
        staging = Path(args.staging) if args.staging else work / "staging"
        if not any(staging.glob("raw/*")):
            subprocess.run([sys.executable, "-m", "factory_sim.cli", "history", "--days", "2", "--lines", ",".join(lines),
                            "--store", str(staging), "--end-date", (today + dt.timedelta(days=1)).isoformat(),
                            "--object-seconds", "60", "--fast-rate-hz", "1", "--no-progress"],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        results = []
        for storage in args.storages.split(","):
            base = {**os.environ, "FACTORY_LINES": ",".join(lines),
                    "FACTORY_START_DATE": (today - dt.timedelta(days=1)).isoformat()}  # fmt: skip
            with instance_home(work / f"home-{storage}", storage, base, "h15_sensor") as env:
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.bench_sensor_steady", "--child", "--storage", storage,
                     "--staging", str(staging), "--store", str(work / f"store-{storage}"), "--today", args.today,
                     "--at", str(args.at), "--ticks", str(args.ticks), "--line-names", ",".join(lines)],
                    env=env, cwd=ROOT, capture_output=True, text=True, check=False,
                )  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"{storage} run failed:\n{proc.stderr[-4000:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps({"benchmark": "bench_sensor_steady", "lines": args.lines, "object_seconds": 60,
                          "sensor_interval_s": INTERVAL_S, "ticks": args.ticks, "cpu_count": os.cpu_count(),
                          "loadavg_1m_at_end": round(os.getloadavg()[0], 2), "storages": results}, indent=2))  # fmt: skip
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
