"""Production tables are the golden days' tables, written before the ingest change (issue 15).

The golden (tests/factory_assets/golden/) holds each partition's table and the SHA-256 of its Parquet
bytes, written by the code before the raw sensor recorded one event per partition; the path under test
records the same history with today's sensor and materializes the productions in one ranged run. The
values must be equal on every machine (per-channel float features to 1e-9 relative: their last bits follow
the CPU's SIMD level); the bytes wherever numpy dispatches the SIMD targets the golden was written with.
How to regenerate it: see tests/support/golden.py.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from dagster import DagsterInstance
from polars.testing import assert_frame_equal

from tests.support.golden import (
    golden_table,
    load_golden,
    productions_digests,
    productions_tables,
    simd_targets,
)

# SIMD levels were measured 1.2e-11 apart; one sample more or less moves a feature far more
FLOAT_REL_TOL = 1e-9


def _tables(tmp_path: Path) -> dict[str, bytes]:
    with DagsterInstance.ephemeral() as instance:
        return productions_tables(tmp_path, instance)


def test_production_tables_hold_the_golden_days_values(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    golden = load_golden()
    assert sorted(tables) == sorted(golden["partitions"])
    for pk, data in tables.items():
        got, want = pl.read_parquet(data), golden_table(pk)
        assert got.schema == want.schema, pk
        exact = [name for name, dtype in got.schema.items() if not dtype.is_float()]
        assert_frame_equal(got.select(exact), want.select(exact), check_exact=True)
        assert_frame_equal(got, want, rel_tol=FLOAT_REL_TOL, abs_tol=0.0)
    if simd_targets() == golden["numpy_simd"]:  # the machine the golden was written on: the very bytes
        assert productions_digests(tables) == golden["partitions"]
