"""Golden production tables: a few fixed simulated line-days, as tables and as SHA-256 of their Parquet bytes.

Why: the ingest path (raw sensor events, backfill runs) may change how partitions are recorded and
launched, never what a production table holds. The golden was written with the code before issue 15's
ingest change; `tests/factory_assets/test_golden_productions.py` asserts the current path (history
written, the raw sensor ticked until it finds nothing new, its events reported to a real instance, the
productions materialized as one partition-range run) writes the same tables.

Why two forms: the simulated sensor signals go through numpy's vectorized math, whose last bits depend
on the CPU's SIMD level (measured 2026-12-07: the same seed on a machine without AVX-512, emulated with
NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL", gives per-channel features up to 1.2e-11 apart, relative,
and other Parquet bytes; every other column is equal). So the tables are compared on every machine,
float columns to 1e-9 relative, every other column exactly; the bytes on machines whose numpy dispatches
the SIMD targets recorded with the golden.

Regenerate (only when the table's columns change on purpose, e.g. a new dimension column):

    .venv/bin/python -m tests.support.golden --write
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import polars as pl
from dagster import DagsterInstance, build_sensor_context, materialize

from factory_assets.production.assets import productions
from factory_assets.raw.partitions import line_day_key
from factory_assets.raw.sensors import build_raw_objects_sensor
from factory_assets.resources import LocalObjectStoreResource
from factory_core.layout import processed_key
from factory_core.store import LocalDirStore
from factory_sim import history

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "factory_assets" / "golden"
GOLDEN_PATH = GOLDEN_DIR / "productions_sha256.json"
TABLES_DIR = GOLDEN_DIR / "productions"  # one <date>.parquet per golden day (values, not the bytes hashed)
LINE = "L1"
FIRST_DAY = "2026-03-01"
DAYS = 4  # history written; the productions of every one of these days are compared
HISTORY_ARGS = ["--fast-rate-hz", "1", "--object-seconds", "300", "--workers", "1", "--seed", "42"]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def golden_days() -> list[str]:
    first = dt.date.fromisoformat(FIRST_DAY)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]


def simd_targets() -> list[str]:
    """The SIMD targets numpy dispatches to on this machine (what the last bits of its math depend on)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def productions_tables(root: Path, instance: DagsterInstance) -> dict[str, bytes]:
    """Write the golden history under `root`, record it with the raw sensor, materialize the
    productions of every day in one ranged run; {partition: its Parquet bytes}."""
    objects = root / "objects"
    argv = ["--days", str(DAYS), "--start-date", FIRST_DAY, "--lines", LINE, "--store", str(objects),
            *HISTORY_ARGS, "--no-progress"]  # fmt: skip
    assert history.cli(argv) == 0
    resource = LocalObjectStoreResource(root=str(objects))
    last = golden_days()[-1]
    sensor = build_raw_objects_sensor(lines=[LINE], today=lambda: dt.date.fromisoformat(last))
    cursor = None
    while True:
        with build_sensor_context(
            instance=instance, cursor=cursor, resources={"object_store": resource}
        ) as ctx:
            result = sensor(ctx)
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        cursor = result.cursor
        if not result.asset_events:
            break
    days = golden_days()
    run = materialize(
        [productions],
        resources={"object_store": resource},
        instance=instance,
        tags={RANGE_START: str(line_day_key(LINE, days[0])), RANGE_END: str(line_day_key(LINE, days[-1]))},
    )
    assert run.success
    store = LocalDirStore(objects)
    return {str(line_day_key(LINE, day)): store.get(processed_key(LINE, day)) for day in days}


def productions_digests(tables: dict[str, bytes]) -> dict[str, str]:
    return {pk: hashlib.sha256(data).hexdigest() for pk, data in tables.items()}


def load_golden() -> dict[str, object]:
    return json.loads(GOLDEN_PATH.read_text())


def table_path(partition: str) -> Path:
    """Where the golden table of a partition ('2026-03-01|L1') is stored."""
    return TABLES_DIR / f"{partition.split('|')[0]}.parquet"


def golden_table(partition: str) -> pl.DataFrame:
    return pl.read_parquet(table_path(partition))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Compute (and with --write store) the golden production tables and digests"
    )
    p.add_argument(
        "--write", action="store_true", help=f"write {GOLDEN_PATH} and the tables under {TABLES_DIR}"
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        tables = productions_tables(Path(tmp), instance)
    doc = {
        "what": "SHA-256 of processed/line=/date=/productions.parquet per partition",
        "history": {"line": LINE, "first_day": FIRST_DAY, "days": DAYS, "args": HISTORY_ARGS},
        "regenerate": ".venv/bin/python -m tests.support.golden --write",
        "partitions": productions_digests(tables),
        "numpy_simd": simd_targets(),
        "tables": f"{TABLES_DIR.relative_to(GOLDEN_DIR)}/<date>.parquet (the values, recompressed)",
    }
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if args.write:
        GOLDEN_PATH.write_text(text)
        TABLES_DIR.mkdir(exist_ok=True)
        for pk, data in tables.items():
            pl.read_parquet(data).write_parquet(table_path(pk), compression="zstd", compression_level=22)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
