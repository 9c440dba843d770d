"""docs/analysis.md stays true: every Python block runs against a small real data set, on the embedded
SQLite warehouse and on a Postgres schema (FACTORY_WAREHOUSE_SCHEMA set), and its answers are checked
against the Parquet rows themselves.

The data: `factory-sim history` (1 Hz) for three days from a day with an over-temperature fault and the
crew roster (`factory-sim roster`), the first two days through the production table and the daily
aggregates (both complete, with their lots), the roster through `master/crew`, laid out like the embedded
defaults (var/objects, var/warehouse.db) in a temporary working directory.
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
from factory_core.layout import CREW_KEY
from factory_core.machine import lot_id
from factory_core.store import LocalDirStore
from factory_sim.craftsmen import BY_CODE
from factory_sim.roster import write_roster
from tests.support.assets import LINE, write_history

REPO = Path(__file__).resolve().parents[1]
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
FIRST, SECOND = "2026-03-07", "2026-03-08"  # both hold an over-temperature fault in the simulator


def _materialize(objects: Path, warehouse: WarehouseResource) -> None:
    resources = {"object_store": LocalObjectStoreResource(root=str(objects)), "warehouse": warehouse}
    result = materialize(
        ASSETS,
        selection=["production/productions*", "master/crew"],
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
    write_roster(LocalDirStore(root / "var" / "objects"))  # the factory's master data beside its sensor data
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
    # Names from the roster, not craftsman:NN: every craftsman of the data set reads by its name.
    names = dict(zip(ns["per_craftsman"]["set_by"], ns["per_craftsman"]["who"], strict=True))
    codes = list(rows.unique("set_by_code").select("set_by", "set_by_code").iter_rows())
    assert {s: names[s] for s, _ in codes} == {s: BY_CODE[c].name for s, c in codes}


def test_the_dimensions_name_every_craftsman_and_every_production_s_lot(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = run_guide(workdir, {}, monkeypatch)
    rows = _rows(workdir)
    named = ns["named"]
    assert named.height == rows.height  # the joins neither drop nor duplicate a production
    assert named["name"].null_count() == 0
    assert set(named["name"]) <= {c.name for c in BY_CODE.values()}
    expected = {lot_id(LINE, p) for p in rows["production_id"]}
    assert set(named["lot_id"]) == expected  # both days complete: every production has its lot
    assert all(re.fullmatch(rf"{LINE}-\d+", x) for x in expected)


def test_a_roster_that_breaks_a_rule_fails_the_crew_asset_naming_row_and_field(
    workdir: Path, tmp_path: Path
) -> None:
    objects = tmp_path / "objects"
    LocalDirStore(objects).put(CREW_KEY, b"code,name,skill\n1,anna,expert\n1000,robot,\n")
    resources = {"object_store": LocalObjectStoreResource(root=str(objects)),
                 "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/wh.db")}  # fmt: skip
    result = materialize(ASSETS, selection="master/crew", resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "roster row 3: code 1000 must be in 1..999" in str(failure)


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
    active = _rows(workdir).filter(pl.col("set_by_code") < 100)["set_by_code"].unique()
    for code in active:  # ... read by the names of the factory's roster
        assert BY_CODE[code].name in outputs, BY_CODE[code].name
    assert f"{LINE}-" in outputs  # the faulted productions' lot ids
    assert "over_temperature" in outputs  # the faulted productions with their settings
    rows = _rows(workdir)
    assert f"│ {rows.height}" in outputs  # the production count of the data set


def test_the_asset_docs_describe_every_asset_of_the_code_location_as_built() -> None:
    """docs/assets.md called the model future work after it shipped: every asset key of the definitions is
    documented there, and nothing is announced as future work."""
    from factory_assets.definitions import defs

    text = (REPO / "docs" / "assets.md").read_text()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {k for k in keys if k not in text} == set()
    assert "future work" not in text.lower()


def test_the_readme_says_what_the_demo_costs_on_disk() -> None:
    readme = (REPO / "README.md").read_text()
    assert re.search(r"`var/`\s+grows to about [\d.]+ GB", readme)
    assert "make clean" in readme
