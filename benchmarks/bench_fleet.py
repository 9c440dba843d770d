"""Benchmark: onboarding several lines' history on PostgreSQL, split by stage (issue 15's fleet case).

Setup (not timed): `factory-sim history` writes `--days` days of `--lines` lines (or `--objects DIR`
reuses one). Baseline in the same run: reading and decoding every raw object once. Timed, in one process
on a fresh PostgreSQL database (or SQLite with `--storage sqlite`) with the project's definitions:
record (`factory_assets.onboard.record_history`, what `factory-onboard record` runs), then the
productions and the daily aggregates of complete days as partition-range runs of one line each (at most
31 days, as the BackfillPolicy splits them) executed by `--workers` worker processes, as the run queue
runs `max_concurrent_runs` runs at once. CPU utilisation of a stage = CPU seconds of its runs / (stage
wall x workers): how busy the runs kept the cores (on a machine shared with other work it is lower).

    .venv/bin/python -m benchmarks.bench_fleet --lines L1,L2,L3 [--days 30 | --days 365] [--objects DIR] [--storage postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.bench_backfill import (
    _run_range,
    _warm,
    decode_floor,
    instance_home,
    run_ranges,
)
from factory_core.store import LocalDirStore

ROOT = Path(__file__).resolve().parents[1]


def _stage(
    pool: ProcessPoolExecutor, asset: str, items: list[tuple[str, list[dt.date]]], workers: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    futures = [pool.submit(_run_range, asset, line, r[0].isoformat(), r[-1].isoformat()) for line, r in items]
    runs = [f.result() for f in futures]
    wall = time.perf_counter() - t0
    cpu = sum(r["cpu_s"] for r in runs)
    return {"s": round(wall, 1), "runs": len(items), "partitions": sum(len(r) for _, r in items),
            "cpu_s": round(cpu, 1), "cpu_utilisation": round(cpu / (wall * workers), 2) if wall else None}  # fmt: skip


def child(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from factory_assets.onboard import record_history
    from factory_assets.production.completeness import reported_days
    from factory_assets.raw.partitions import consecutive
    from factory_assets.resources.selection import resources_from_env

    lines = args.lines.split(",")
    start = dt.date.fromisoformat(args.start)
    days = [start + dt.timedelta(days=i) for i in range(args.days)]
    out: dict[str, Any] = {"storage": args.storage}
    with (
        DagsterInstance.get() as instance,
        ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool,
    ):
        for f in [pool.submit(_warm) for _ in range(args.workers)]:
            f.result()
        t0, cpu0 = time.perf_counter(), time.process_time()
        stats = record_history(
            instance, resources_from_env()["object_store"], lines, days[-1] + dt.timedelta(days=1)
        )
        wall = time.perf_counter() - t0
        out["record"] = {"s": round(wall, 1), "cpu_s": round(time.process_time() - cpu0, 1), "ticks": stats.ticks,
                         "objects": stats.objects, "events": stats.events, "objects_per_s": round(stats.objects / wall)}  # fmt: skip
        items = [(line, r) for line in lines for r in run_ranges(days, args.workers)]
        out["productions"] = _stage(pool, "production/productions", items, args.workers)
        keys = {(line, d): f"{d.isoformat()}|{line}" for line in lines for d in days}
        reports = reported_days(instance, list(keys.values()))
        items = [(line, r) for line in lines
                 for seg in consecutive([d for d in days if reports[keys[(line, d)]].complete])
                 for r in run_ranges(seg, args.workers)]  # fmt: skip
        out["aggregates"] = _stage(pool, "aggregates/daily_line_aggregates", items, args.workers)
        out["backfill_wall_s"] = round(sum(out[k]["s"] for k in ("record", "productions", "aggregates")), 1)
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", default="L1,L2,L3")
    p.add_argument(
        "--days", type=int, default=30, help="days of history (the issue's case: 365; hours of history)"
    )
    p.add_argument("--end-date", default="2026-07-01", help="the history's end (exclusive)")
    p.add_argument("--objects", help="a history written before (else written to a temporary directory)")
    p.add_argument("--storage", default="postgres", choices=("postgres", "sqlite"))
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    end = dt.date.fromisoformat(args.end_date)
    start = end - dt.timedelta(days=args.days)
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        objects = Path(args.objects) if args.objects else work / "objects"
        if not any(objects.glob("raw/*")):
            subprocess.run([sys.executable, "-m", "factory_sim.cli", "history", "--days", str(args.days), "--lines",
                            args.lines, "--store", str(objects), "--end-date", end.isoformat(), "--no-progress"],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        floor, n_objects = decode_floor(LocalDirStore(objects))
        base = {**os.environ, "FACTORY_STORE_URL": str(objects), "FACTORY_LINES": args.lines,
                "FACTORY_WAREHOUSE_URL": f"sqlite:///{work / 'warehouse.db'}", "FACTORY_START_DATE": start.isoformat()}  # fmt: skip
        with instance_home(work / "home", args.storage, base, "h15_fleet") as env:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_fleet", "--child", "--storage", args.storage, "--days",
                 str(args.days), "--lines", args.lines, "--start", start.isoformat(), "--workers", str(args.workers)],
                env=env, cwd=ROOT, capture_output=True, text=True, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"run failed:\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        stages = {k: round(result[k]["s"] / floor, 3) for k in ("record", "productions", "aggregates")}
        print(json.dumps({"benchmark": "bench_fleet", "lines": args.lines, "days": args.days, "raw_objects": n_objects,
                          "workers": args.workers, "cpu_count": os.cpu_count(), "decode_floor_s": round(floor, 1),
                          "wall_over_decode_floor": round(result["backfill_wall_s"] / floor, 2),
                          "stage_over_decode_floor": stages, "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
                          **result}, indent=2))  # fmt: skip
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
