"""Benchmark: onboarding several lines' history on PostgreSQL, split by stage (issue 15's fleet case).

Setup (not timed): `factory-sim history` writes `--days` days of `--lines` lines (or `--objects DIR`
reuses one). Baseline in the same run: reading and decoding every raw object once. Timed, in one process
on a fresh PostgreSQL database (or SQLite with `--storage sqlite`) with the project's definitions:
record (`factory_assets.onboard.record_history`, what `factory-onboard record` runs), then the
productions and the daily aggregates of complete days as partition-range runs of one line each (at most
31 days, as the BackfillPolicy splits them) executed by `--workers` worker processes, as the run queue
runs `max_concurrent_runs` runs at once. CPU utilisation of a stage = CPU seconds of its runs / (stage
wall x workers): how busy the runs kept the cores (on a machine shared with other work it is lower).

Streamed (`--chunk-days N`, for histories larger than the disk): per chunk of N days, the history is
written (untimed), decoded once (its floor, summed over the chunks), recorded with the cursor carried on,
and backfilled: productions of every day whose next day is written (the chunk's last day waits for the
next chunk: its table reads one hour after midnight), aggregates of those complete. Then raw objects no
day still needs are deleted. Stage figures are sums over the chunks.

    .venv/bin/python -m benchmarks.bench_fleet --lines L1,L2,L3 [--days 30 | --days 365 --chunk-days 61 --end-date 2027-01-01] [--objects DIR] [--storage postgres]
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


def _sum_stages(parts: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """One stage's totals over the chunks of a streamed run."""
    wall, cpu = sum(p["s"] for p in parts), sum(p["cpu_s"] for p in parts)
    return {"s": round(wall, 1), "runs": sum(p["runs"] for p in parts),
            "partitions": sum(p["partitions"] for p in parts), "cpu_s": round(cpu, 1),
            "cpu_utilisation": round(cpu / (wall * workers), 2) if wall else None}  # fmt: skip


def chunks(days: list[dt.date], chunk_days: int) -> list[list[dt.date]]:
    """`days` in consecutive pieces of at most `chunk_days` (all at once when chunk_days <= 0)."""
    size = chunk_days if chunk_days > 0 else len(days)
    return [days[i : i + size] for i in range(0, len(days), size)]


def _write_history(objects: Path, lines: str, first: dt.date, n_days: int) -> None:
    """Untimed setup: `factory-sim history` for `n_days` from `first` (both cores)."""
    subprocess.run([sys.executable, "-m", "factory_sim.cli", "history", "--days", str(n_days), "--lines", lines,
                    "--store", str(objects), "--start-date", first.isoformat(), "--no-progress"],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip


def _prune_raw(objects: Path, lines: list[str], before: dt.date) -> int:
    """Delete the raw objects of days before `before` (their productions are done): bytes freed."""
    freed = 0
    for line in lines:
        for day_dir in (objects / "raw" / f"line={line}").glob("date=*"):
            if dt.date.fromisoformat(day_dir.name[len("date=") :]) < before:
                freed += sum(f.stat().st_size for f in day_dir.rglob("*") if f.is_file())
                shutil.rmtree(day_dir)
    return freed


FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def _clock_for(end: dt.date) -> dict[str, str]:
    """Environment for the timed child when the history ends after today. The simulator's calendar starts
    on 2026-01-01 and Dagster's daily partitions end today, so a full year ends in the future: the child's
    wall clock is moved forward to `end` with libfaketime (Debian `faketime`), by a constant offset, so
    durations stay real. Nothing when the history ends by today."""
    ahead = (end - dt.datetime.now(dt.UTC).date()).days
    if ahead <= 0:
        return {}
    if not FAKETIME_LIB.exists():
        raise SystemExit(f"the history ends {end}, after today: its partitions do not exist yet. Install "
                         f"Debian's faketime ({FAKETIME_LIB}) to run with the clock moved {ahead} days ahead, "
                         "or pass an --end-date by today")  # fmt: skip
    # A constant offset: durations stay real on every clock (FAKETIME_DONT_FAKE_MONOTONIC would make
    # time.sleep fail with EINVAL). Not `tail` (Dagster mirrors compute logs with it; faked, it outlived
    # its SIGTERM and held our pipe open).
    return {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": f"+{ahead}d", "FAKETIME_SKIP_CMDS": "tail"}


def child(args: argparse.Namespace) -> int:
    """Timed part, in one process on the benchmark's instance. Streamed (`--chunk-days`): per chunk, write
    its history (untimed), decode it once (the floor), record it, then run the productions of every day
    whose next day is written (the last day waits for the next chunk, its lookahead) and the aggregates
    of those complete; raw objects no day still needs are deleted, so a year fits on a small disk."""
    from dagster import DagsterInstance

    from factory_assets.onboard import record_history
    from factory_assets.production.completeness import reported_days
    from factory_assets.raw.partitions import consecutive
    from factory_assets.resources.selection import resources_from_env

    lines = args.lines.split(",")
    start = dt.date.fromisoformat(args.start)
    days = [start + dt.timedelta(days=i) for i in range(args.days)]
    objects = Path(args.objects)
    streamed = args.chunk_days > 0
    parts: dict[str, list[dict[str, Any]]] = {"productions": [], "aggregates": []}
    floor_s, n_objects, held, cursor, peak_bytes = 0.0, 0, [], None, 0
    record = {"s": 0.0, "cpu_s": 0.0, "ticks": 0, "objects": 0, "events": 0}
    with (
        DagsterInstance.get() as instance,
        ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool,
    ):
        for f in [pool.submit(_warm) for _ in range(args.workers)]:
            f.result()
        store = resources_from_env()["object_store"]
        pieces = chunks(days, args.chunk_days)
        for i, chunk in enumerate(pieces):
            last = i == len(pieces) - 1
            if streamed:
                _write_history(objects, args.lines, chunk[0], len(chunk))
                peak_bytes = max(peak_bytes, sum(f.stat().st_size for f in objects.rglob("*.fsr")))
                s, n = decode_floor(
                    LocalDirStore(objects),
                    [f"raw/line={line}/date={day}/" for line in lines for day in chunk],
                )
                floor_s, n_objects = floor_s + s, n_objects + n
            t0, cpu0 = time.perf_counter(), time.process_time()
            stats = record_history(instance, store, lines, chunk[-1] + dt.timedelta(days=1), cursor=cursor)
            cursor = stats.cursor
            record["s"] += time.perf_counter() - t0
            record["cpu_s"] += time.process_time() - cpu0
            for k in ("ticks", "objects", "events"):
                record[k] += getattr(stats, k)
            ready = held + (chunk if last or not streamed else chunk[:-1])
            held = [] if last or not streamed else chunk[-1:]
            items = [(line, r) for line in lines for r in run_ranges(ready, args.workers)]
            parts["productions"].append(_stage(pool, "production/productions", items, args.workers))
            keys = {(line, d): f"{d.isoformat()}|{line}" for line in lines for d in ready}
            reports = reported_days(instance, list(keys.values()))
            items = [(line, r) for line in lines
                     for seg in consecutive([d for d in ready if reports[keys[(line, d)]].complete])
                     for r in run_ranges(seg, args.workers)]  # fmt: skip
            parts["aggregates"].append(_stage(pool, "aggregates/daily_line_aggregates", items, args.workers))
            if streamed:
                freed = _prune_raw(objects, lines, chunk[-1] - dt.timedelta(days=1))
                done = {k: v[-1]["s"] for k, v in parts.items() if v}
                print(json.dumps({"chunk": f"{chunk[0]}..{chunk[-1]}", "productions_days": len(ready),
                                  "floor_s": round(s, 1), "pipeline_s": round(time.perf_counter() - t0, 1), **done,
                                  "raw_freed_gb": round(freed / 1e9, 1)}), file=sys.stderr, flush=True)  # fmt: skip
    out: dict[str, Any] = {"storage": args.storage}
    out["record"] = {**{k: round(v, 1) for k, v in record.items()}, "objects_per_s": round(record["objects"] / record["s"])}  # fmt: skip
    out["productions"] = _sum_stages(parts["productions"], args.workers)
    out["aggregates"] = _sum_stages(parts["aggregates"], args.workers)
    if streamed:
        out.update({"decode_floor_s": round(floor_s, 1), "raw_objects": n_objects, "chunks": len(parts["productions"]),
                    "peak_raw_gb_on_disk": round(peak_bytes / 1e9, 1)})  # fmt: skip
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
    p.add_argument("--chunk-days", type=int, default=0,
                   help="stream the history in chunks of this many days: write, decode, record and backfill each, "
                        "then delete the raw objects no day still needs (a year of three lines is ~115 GB; "
                        "with 31 ~10 GB at a time). 0: write it all first (default)")  # fmt: skip
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.chunk_days and args.objects:
        raise SystemExit("--chunk-days writes (and deletes) its own history: leave out --objects")
    end = dt.date.fromisoformat(args.end_date)
    start = end - dt.timedelta(days=args.days)
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        objects = Path(args.objects) if args.objects else work / "objects"
        if not args.chunk_days:
            if not any(objects.glob("raw/*")):
                _write_history(objects, args.lines, start, args.days)
            floor, n_objects = decode_floor(LocalDirStore(objects))
        base = {**os.environ, "FACTORY_STORE_URL": str(objects), "FACTORY_LINES": args.lines,
                "FACTORY_WAREHOUSE_URL": f"sqlite:///{work / 'warehouse.db'}", "FACTORY_START_DATE": start.isoformat()}  # fmt: skip
        with instance_home(work / "home", args.storage, base, "h15_fleet") as env:
            env.update(_clock_for(end))
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_fleet", "--child", "--storage", args.storage, "--days",
                 str(args.days), "--lines", args.lines, "--start", start.isoformat(), "--workers", str(args.workers),
                 "--objects", str(objects), "--chunk-days", str(args.chunk_days)],
                env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"run failed (exit {proc.returncode}); its stderr is above")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if args.chunk_days:
            floor, n_objects = result.pop("decode_floor_s"), result.pop("raw_objects")
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
