"""Production tables are byte-identical to the golden written before the ingest change (issue 15).

The golden (tests/factory_assets/golden/productions_sha256.json) holds the SHA-256 of each partition's
Parquet bytes written by the code before the raw sensor recorded one event per partition; the path under
test records the same history with today's sensor and materializes the productions in one ranged run.
How to regenerate it: see tests/support/golden.py.
"""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance

from tests.support.golden import load_golden, productions_digests


def test_production_tables_are_byte_identical_to_the_golden_days(tmp_path: Path) -> None:
    with DagsterInstance.ephemeral() as instance:
        digests = productions_digests(tmp_path, instance)
    assert digests == load_golden()
