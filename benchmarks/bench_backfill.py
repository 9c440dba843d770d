"""Benchmark: a 90-day backfill of one line through Dagster, on SQLite and on PostgreSQL in the same run.

Setup (not timed): `factory-sim history` writes the days into a local store (or `--objects DIR` reuses a
history written before). Baseline measured in the same run: the floor any implementation pays, reading
and decoding every raw object once (measured before and after the storages, both reported). Then, per
instance storage (a fresh SQLite DAGSTER_HOME; a fresh database on the PostgreSQL server), in its own
process with the project's definitions, timed:

1. record: the raw-objects sensor ticked back to back until it finds nothing new, its events reported to
   the instance as the daemon does (`factory_assets.onboard.record_history`, what `factory-onboard record`
   runs): one event per (line, day) partition and tick, from object headers;
2. productions: partition-range runs (at most 31 days each, as the assets' BackfillPolicy splits a
   backfill; the count rounded up to a multiple of the workers so both cores stay busy) executed by
   `--workers` worker processes, as the queued run coordinator runs `max_concurrent_runs` runs at once;
   CPU utilisation = CPU seconds of the runs / (stage wall x workers);
3. aggregates: the same for the days whose production table reports them complete.

Also per storage: instance events recorded per second, for a raw partition event (as the sensor writes
it now, 288 objects behind it) and for the former one-event-per-object shape (issue 12's question).

    .venv/bin/python -m benchmarks.bench_backfill [--days 90] [--objects DIR] [--storages sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from factory_core.rawformat import decode_batch
from factory_core.store import LocalDirStore

ROOT = Path(__file__).resolve().parents[1]
PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
MAX_PARTITIONS_PER_RUN = 31
EVENTS_MEASURED = 300
PG_STORAGE = """
storage:
  postgres:
    postgres_db:
      hostname: {env: DAGSTER_PG_HOST}
      port: {env: DAGSTER_PG_PORT}
      username: {env: DAGSTER_PG_USERNAME}
      password: {env: DAGSTER_PG_PASSWORD}
      db_name: {env: DAGSTER_PG_DB}
      scheme: postgresql+psycopg2
"""


def decode_floor(store: LocalDirStore, prefixes: Iterable[str] = ("raw/",)) -> tuple[float, int]:
    """Seconds to read and decode every raw object under `prefixes` once (the baseline), and how many."""
    started = time.perf_counter()
    n = 0
    for prefix in prefixes:
        for key in store.list(prefix):
            decode_batch(store.get(key))
            n += 1
    return time.perf_counter() - started, n


def run_ranges(
    days: list[dt.date], workers: int, max_per_run: int = MAX_PARTITIONS_PER_RUN
) -> list[list[dt.date]]:
    """Consecutive day ranges of at most `max_per_run`, their count a multiple of `workers`, sizes even."""
    if not days:
        return []
    n = math.ceil(len(days) / max_per_run)
    n = min(len(days), math.ceil(n / workers) * workers)
    size, extra = divmod(len(days), n)
    out, i = [], 0
    for k in range(n):
        m = size + (1 if k < extra else 0)
        out.append(days[i : i + m])
        i += m
    return out


# ------------------------------------------------------------------------------------ worker (one run)


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _warm() -> float:
    """Import the definitions once per worker process (a run launcher's process pays this per run)."""
    import factory_assets.definitions  # noqa: F401

    return _cpu_s()


def _run_range(asset: str, line: str, first: str, last: str) -> dict[str, float]:
    """One partition-range run of `asset` (production/productions or aggregates/...) on the instance."""
    from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

    from factory_assets.definitions import ASSETS
    from factory_assets.raw.partitions import line_day_key
    from factory_assets.resources.selection import resources_from_env

    cpu0, t0 = _cpu_s(), time.perf_counter()
    with DagsterInstance.get() as instance:
        result = materialize(
            ASSETS,
            selection=AssetSelection.assets(AssetKey(asset.split("/"))),
            resources=resources_from_env(),
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={
                "dagster/asset_partition_range_start": str(line_day_key(line, first)),
                "dagster/asset_partition_range_end": str(line_day_key(line, last)),
            },
        )
    if not result.success:
        raise RuntimeError(f"{asset} {first}..{last} failed")
    return {"cpu_s": _cpu_s() - cpu0, "wall_s": time.perf_counter() - t0}


def _stage(
    pool: ProcessPoolExecutor, asset: str, line: str, ranges: list[list[dt.date]], workers: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    futures = [pool.submit(_run_range, asset, line, r[0].isoformat(), r[-1].isoformat()) for r in ranges]
    runs = [f.result() for f in futures]
    wall = time.perf_counter() - t0
    cpu = sum(r["cpu_s"] for r in runs)
    return {
        "s": round(wall, 1),
        "runs": len(ranges),
        "cpu_s": round(cpu, 1),
        "cpu_utilisation": round(cpu / (wall * workers), 2) if wall else None,
    }


# ------------------------------------------------------------------------------------ child (one storage)


def _events_per_s(instance: Any, n: int) -> dict[str, float]:
    """Instance writes per second for the two raw event shapes (on a benchmark-only asset key)."""
    from dagster import AssetKey, AssetMaterialization, MetadataValue

    from factory_assets.raw.manifest import ChannelRange, RawObjectSummary
    from factory_assets.raw.sensors import raw_partition_event

    chans = tuple(
        ChannelRange(f"ch{i:02d}", 3000 * k, 3000, 10**18, 10**18 + 300 * 10**9)
        for i in range(20)
        for k in (0,)
    )
    objs = [RawObjectSummary(f"raw/line=B/date=2026-01-01/hour={k // 12:02d}/B_all_{k:06d}.fsr", "B", "2026-01-01",
                             "all", 360_000, chans) for k in range(288)]  # fmt: skip
    key = AssetKey(["bench", "raw_events"])
    per_partition = raw_partition_event(
        "B", "2026-01-01", objs, "manifests/raw/line=B/date=2026-01-01/x.json"
    )
    per_partition = AssetMaterialization(
        asset_key=key,
        partition="2026-01-01|B",
        description=per_partition.description,
        metadata=per_partition.metadata,
    )
    per_object = AssetMaterialization(
        asset_key=key,
        partition="2026-01-01|B",
        description=f"raw object {objs[0].key}",
        metadata={"key": MetadataValue.path(objs[0].key), "group": "all", "channels": 20,
                  "channel_names": ", ".join(c.name for c in chans),
                  "sequence_ranges": MetadataValue.json({c.name: [0, 3000] for c in chans}),
                  "samples": 60_000, "bytes": 360_000, "first_sample": MetadataValue.timestamp(1.0e9),
                  "last_sample": MetadataValue.timestamp(1.0e9 + 300)},
    )  # fmt: skip
    out = {}
    for name, event in (("partition_event", per_partition), ("per_object_event", per_object)):
        t0 = time.perf_counter()
        for _ in range(n):
            instance.report_runless_asset_event(event)
        out[f"{name}s_per_s"] = round(n / (time.perf_counter() - t0), 1)
    return out


def child(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from factory_assets.onboard import record_history
    from factory_assets.production.completeness import reported_days
    from factory_assets.raw.partitions import consecutive, line_day_key
    from factory_assets.resources.selection import resources_from_env

    start = dt.date.fromisoformat(args.start)
    days = [start + dt.timedelta(days=i) for i in range(args.days)]
    today = days[-1] + dt.timedelta(days=1)
    out: dict[str, Any] = {"storage": args.storage}
    ctx = get_context("spawn")
    with DagsterInstance.get() as instance, ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        out["instance_storage"] = type(instance.event_log_storage).__name__
        warm = [pool.submit(_warm) for _ in range(args.workers)]  # not timed: imports, as a code server has
        for f in warm:
            f.result()
        cpu0, t0 = time.process_time(), time.perf_counter()
        stats = record_history(instance, resources_from_env()["object_store"], [args.line], today)
        t1 = time.perf_counter()
        out["record"] = {"s": round(t1 - t0, 1), "cpu_s": round(time.process_time() - cpu0, 1), "ticks": stats.ticks,
                         "objects": stats.objects, "events": stats.events,
                         "objects_per_s": round(stats.objects / (t1 - t0), 1)}  # fmt: skip
        out["productions"] = _stage(
            pool, "production/productions", args.line, run_ranges(days, args.workers), args.workers
        )
        reports = reported_days(instance, [str(line_day_key(args.line, d.isoformat())) for d in days])
        complete = [d for d in days if reports[str(line_day_key(args.line, d.isoformat()))].complete]
        ranges = [r for seg in consecutive(complete) for r in run_ranges(seg, args.workers)]
        out["aggregates"] = _stage(pool, "aggregates/daily_line_aggregates", args.line, ranges, args.workers)
        out["aggregates"]["days"] = len(complete)
        out["backfill_wall_s"] = round(
            out["record"]["s"] + out["productions"]["s"] + out["aggregates"]["s"], 1
        )
        out["events"] = _events_per_s(instance, EVENTS_MEASURED)
    print(json.dumps(out))
    return 0


# ------------------------------------------------------------------------------------------- parent


def _pg_database(create: bool, name: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        if create:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        else:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


@contextlib.contextmanager
def instance_home(home: Path, storage: str, env: dict[str, str], tag: str) -> Iterator[dict[str, str]]:
    """A fresh DAGSTER_HOME at `home` for `storage`: the repository's dagster.yaml, plus for "postgres" the
    PostgreSQL storage on a new database of the machine's server (dropped on exit). Yields `env` pointing
    at it."""
    home.mkdir()
    config = (ROOT / "dagster.yaml").read_text()
    env = {**env, "DAGSTER_HOME": str(home)}
    db = None
    if storage == "postgres":
        db = f"{tag}_{uuid.uuid4().hex[:8]}"
        _pg_database(True, db)
        config += PG_STORAGE
        env.update({"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "postgres",
                    "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": db, "PGSSLMODE": "disable"})  # fmt: skip
    (home / "dagster.yaml").write_text(config)
    try:
        yield env
    finally:
        if db:
            _pg_database(False, db)


def _measure_storage(
    storage: str, work: Path, objects: Path, args: argparse.Namespace, start: dt.date
) -> dict[str, Any]:
    base = {**os.environ, "FACTORY_STORE_URL": str(objects), "FACTORY_LINES": args.line,
            "FACTORY_WAREHOUSE_URL": f"sqlite:///{work / f'warehouse-{storage}.db'}",
            "FACTORY_START_DATE": start.isoformat()}  # fmt: skip
    with instance_home(work / f"home-{storage}", storage, base, "h15_bench") as env:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_backfill", "--child", "--storage", storage, "--days", str(args.days),
             "--line", args.line, "--start", start.isoformat(), "--workers", str(args.workers)],
            env=env, cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{storage} run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--line", default="L1")
    p.add_argument("--objects", help="a history written before (else written to a temporary directory)")
    p.add_argument("--end-date", default="2026-07-01", help="the history's end (exclusive)")
    p.add_argument("--storages", default="sqlite,postgres")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="runs at once (max_concurrent_runs)"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--storage", help=argparse.SUPPRESS)
    p.add_argument("--start", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    end = dt.date.fromisoformat(args.end_date)
    start = end - dt.timedelta(days=args.days)
    work = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    try:
        objects = Path(args.objects) if args.objects else work / "objects"
        setup_s = 0.0
        if not any(objects.glob("raw/*")):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "factory_sim.cli", "history", "--days", str(args.days), "--lines",
                            args.line, "--store", str(objects), "--end-date", end.isoformat(), "--no-progress"],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            setup_s = time.perf_counter() - t
        floor_before, n_objects = decode_floor(LocalDirStore(objects))
        results = [_measure_storage(s, work, objects, args, start) for s in args.storages.split(",")]
        floor_after, _ = decode_floor(LocalDirStore(objects))
        floor = min(floor_before, floor_after)
        for r in results:
            r["wall_over_decode_floor"] = round(r["backfill_wall_s"] / floor, 2)
            r["record_over_decode_floor"] = round(r["record"]["s"] / floor, 3)
        print(json.dumps({
            "benchmark": "bench_backfill", "days": args.days, "line": args.line, "raw_objects": n_objects,
            "history_setup_s": round(setup_s, 1), "workers": args.workers, "cpu_count": os.cpu_count(),
            "decode_floor_s": round(floor, 1), "decode_floor_before_s": round(floor_before, 1),
            "decode_floor_after_s": round(floor_after, 1), "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "storages": results,
        }, indent=2))  # fmt: skip
        return 0
    finally:
        shutil.rmtree(work / "objects", ignore_errors=True) if not args.objects else None
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
