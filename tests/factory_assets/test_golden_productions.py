"""Production tables are byte-identical to the golden written before the ingest change (issue 15).

The golden (tests/factory_assets/golden/productions_sha256.json) holds the SHA-256 of each partition's
Parquet bytes written by the code before the raw sensor recorded one event per partition; the path under
test records the same history with today's sensor and materializes the productions in one ranged run.
How to regenerate it: see tests/support/golden.py.
"""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance

from tests.support.golden import column_digests, load_golden, productions_digests, productions_tables


def test_production_tables_are_byte_identical_to_the_golden_days(tmp_path: Path) -> None:
    with DagsterInstance.ephemeral() as instance:
        tables = productions_tables(tmp_path, instance)
    golden = load_golden()
    # Column by column first: a failure names the columns whose values changed, not only the file.
    changed = {
        pk: sorted(
            name for name, digest in column_digests(data).items() if golden["columns"][pk].get(name) != digest
        )
        for pk, data in tables.items()
    }
    assert {pk: names for pk, names in changed.items() if names} == {}
    assert {pk: sorted(column_digests(data)) for pk, data in tables.items()} == {
        pk: sorted(columns) for pk, columns in golden["columns"].items()
    }
    assert productions_digests(tables) == golden["partitions"]
