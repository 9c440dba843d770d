"""Benchmark: a 90-day backfill of one line through Dagster (budget: 15 minutes wall on 2 cores).

Setup (not timed): `factory-sim history` writes the days into a temporary local store. Timed, on a real
Dagster instance (SQLite under a temporary DAGSTER_HOME) with the project's definitions: the raw-objects
sensor records every object as a materialization of its partition, then the per-production tables and the
daily aggregates are materialized over the whole range in partition-range runs (as a backfill with the
assets' BackfillPolicy does). The baseline measured in the same run is the floor any implementation pays:
reading and decoding every raw object once.

    .venv/bin/python -m benchmarks.bench_backfill [--days 90]
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
from pathlib import Path

from factory_core.rawformat import decode_batch
from factory_core.store import LocalDirStore

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 15 * 60


def _decode_floor(store: LocalDirStore) -> tuple[float, int]:
    """Seconds to read and decode every raw object once (the baseline), and how many there were."""
    started = time.perf_counter()
    n = 0
    for key in store.list("raw/"):
        decode_batch(store.get(key))
        n += 1
    return time.perf_counter() - started, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--line", default="L1")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    try:
        end = dt.date(2026, 7, 1)
        objects = work / "objects"
        setup = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "factory_sim.cli",
                "history",
                "--days",
                str(args.days),
                "--lines",
                args.line,
                "--store",
                str(objects),
                "--end-date",
                end.isoformat(),
                "--no-progress",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        setup_s = time.perf_counter() - setup
        start = end - dt.timedelta(days=args.days)
        (work / "dagster_home").mkdir()
        shutil.copy(ROOT / "dagster.yaml", work / "dagster_home" / "dagster.yaml")
        os.environ.update(
            {
                "FACTORY_STORE_URL": str(objects),
                "FACTORY_WAREHOUSE_URL": f"sqlite:///{work / 'warehouse.db'}",
                "FACTORY_LINES": args.line,
                "FACTORY_START_DATE": start.isoformat(),
                "DAGSTER_HOME": str(work / "dagster_home"),
            }
        )
        from dagster import DagsterInstance

        from factory_assets.aggregates.assets import AGGREGATES_KEY
        from factory_assets.aggregates.tables import DAILY_LINE_AGGREGATES
        from factory_assets.production.assets import PRODUCTIONS_KEY
        from factory_assets.resources.selection import resources_from_env
        from factory_sim.demo.pipeline import materialize_days, record_raw_objects

        floor_s, n_objects = _decode_floor(LocalDirStore(objects))
        instance = DagsterInstance.get()
        resources = resources_from_env()
        days = [start + dt.timedelta(days=i) for i in range(args.days)]
        t0 = time.perf_counter()
        recorded, _ = record_raw_objects(instance, resources)
        t1 = time.perf_counter()
        prod_runs = materialize_days(instance, resources, PRODUCTIONS_KEY, args.line, days, "productions")
        t2 = time.perf_counter()
        agg_runs = materialize_days(instance, resources, AGGREGATES_KEY, args.line, days, "aggregates")
        t3 = time.perf_counter()
        rows = resources["warehouse"].fetch(DAILY_LINE_AGGREGATES)
        wall = t3 - t0
        print(
            json.dumps(
                {
                    "benchmark": "bench_backfill",
                    "days": args.days,
                    "raw_objects": n_objects,
                    "history_setup_s": round(setup_s, 1),
                    "sensor_events_recorded": recorded,
                    "sensor_s": round(t1 - t0, 1),
                    "productions_s": round(t2 - t1, 1),
                    "productions_runs": prod_runs,
                    "aggregates_s": round(t3 - t2, 1),
                    "aggregates_runs": agg_runs,
                    "aggregate_rows": len(rows),
                    "backfill_wall_s": round(wall, 1),
                    "budget_s": BUDGET_S,
                    "within_budget": wall <= BUDGET_S,
                    "decode_floor_s": round(floor_s, 1),
                    "wall_over_decode_floor": round(wall / floor_s, 2),
                },
                indent=2,
            )
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
