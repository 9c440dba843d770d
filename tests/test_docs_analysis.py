"""docs/analysis.md stays true: every Python block runs against a small real data set, on the embedded
SQLite warehouse and on a Postgres schema (FACTORY_WAREHOUSE_SCHEMA set), and its answers are checked
against the Parquet rows themselves.

The data: `factory-sim history` (1 Hz) for three days from a day with an over-temperature fault, the
first two through the production table and the daily aggregates (both complete), laid out like the
embedded defaults (var/objects, var/warehouse.db) in a temporary working directory.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, materialize

from factory_assets.definitions import ASSETS
from factory_assets.raw.partitions import line_day_key
from factory_assets.resources import LocalObjectStoreResource, WarehouseResource
from tests.support.assets import LINE, write_history

REPO = Path(__file__).resolve().parents[1]
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
FIRST, SECOND = "2026-03-07", "2026-03-08"  # both hold an over-temperature fault in the simulator


def _materialize(objects: Path, warehouse: WarehouseResource) -> None:
    resources = {"object_store": LocalObjectStoreResource(root=str(objects)), "warehouse": warehouse}
    result = materialize(
        ASSETS,
        selection="production/productions*",
        resources=resources,
        instance=DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": line_day_key(LINE, FIRST),
            "dagster/asset_partition_range_end": line_day_key(LINE, SECOND),
        },
    )
    assert result.success


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("analysis")
    write_history(str(root / "var" / "objects"), FIRST, 3)
    _materialize(root / "var" / "objects", WarehouseResource(url=f"sqlite:///{root}/var/warehouse.db"))
    return root


@pytest.fixture
def pg_schema(workdir: Path) -> Iterator[str]:
    schema = f"docs_{uuid.uuid4().hex[:10]}"
    _materialize(workdir / "var" / "objects", WarehouseResource(url=PG_URL, db_schema=schema))
    yield schema
    eng = sa.create_engine(PG_URL)
    with eng.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    eng.dispose()


def run_guide(workdir: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Execute every ```python block of docs/analysis.md in order, in one namespace, from `workdir`."""
    for var in ("FACTORY_WAREHOUSE_URL", "FACTORY_WAREHOUSE_SCHEMA"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "analysis.md").read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict[str, Any] = {}
    monkeypatch.chdir(workdir)
    for block in blocks:
        exec(compile(block, "docs/analysis.md", "exec"), namespace)
    return namespace


def _rows(workdir: Path) -> pl.DataFrame:
    return pl.read_parquet(
        workdir / "var/objects/processed/line=*/date=*/productions.parquet", hive_partitioning=True
    )


def test_every_block_runs_on_the_embedded_defaults_and_answers_from_the_rows(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = run_guide(workdir, {}, monkeypatch)
    rows = _rows(workdir)
    assert ns["by_operator"]["productions"].sum() == rows.height
    assert ns["daily"].height == 2
    hot = ns["hot_runs"]
    assert "over_temperature" in hot["fault"].to_list()  # the example finds the overheated runs
    assert hot.height < rows.height / 4
    # The breakdown weights each craftsman-day by its productions: equal to the mean over the rows.
    per = {r["set_by"]: r["quality_mean"] for r in ns["per_craftsman"].iter_rows(named=True)}
    truth = rows.group_by("set_by").agg(pl.col("qa_quality").mean())
    for who, quality in truth.iter_rows():
        assert per[who] == pytest.approx(quality, abs=1e-9), who


def test_the_warehouse_block_reads_a_postgres_schema(
    workdir: Path, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = run_guide(
        workdir, {"FACTORY_WAREHOUSE_URL": PG_URL, "FACTORY_WAREHOUSE_SCHEMA": pg_schema}, monkeypatch
    )
    assert ns["daily"].height == 2
    assert ns["per_craftsman"]["productions"].sum() == _rows(workdir).height


def test_the_analysis_notebook_runs_end_to_end_and_answers_the_three_questions(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    for var in ("FACTORY_WAREHOUSE_URL", "FACTORY_WAREHOUSE_SCHEMA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANALYSIS_VAR", str(workdir / "var"))
    nb = nbformat.read(REPO / "docs" / "analysis.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    outputs = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )
    assert "Error" not in outputs
    assert "craftsman:" in outputs  # weekly quality per craftsman, and the setters' comparison
    assert "over_temperature" in outputs  # the faulted productions with their settings
    rows = _rows(workdir)
    assert f"│ {rows.height}" in outputs  # the production count of the data set
