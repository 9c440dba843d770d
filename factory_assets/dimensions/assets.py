"""`master/crew`: the factory's crew roster (layout.CREW_KEY) loaded into the warehouse's `crew` table.

Why an asset: the roster is master data the factory edits by hand; loading it through Dagster validates it
(a bad row fails the run naming the row, field and rule, and the table keeps its last good content),
records what was loaded (row count, preview, the roster's digest) and shows in the graph next to the
tables it explains. The table is replaced in one transaction. `crew_roster_sensor` (sensors.py) requests a
run when the roster appears or changes; the demo loads it once directly. Lots need no asset: the daily aggregates write a day's `lots` rows with its
aggregates (aggregates/assets.py).
"""

import hashlib

import polars as pl
from dagster import AssetExecutionContext, AssetKey, Failure, MaterializeResult, MetadataValue, asset

from factory_assets.dimensions.compute import crew_rows
from factory_assets.dimensions.tables import CREW
from factory_assets.markdown import md_table
from factory_assets.resources.object_store import ObjectStoreResource
from factory_assets.resources.warehouse import WarehouseResource
from factory_assets.schema import table_schema
from factory_core.crew import RosterError, parse_roster
from factory_core.layout import CREW_KEY
from factory_core.store import ObjectNotFoundError

CREW_ASSET_KEY = AssetKey(["master", "crew"])


@asset(
    key=CREW_ASSET_KEY,
    description=(
        f"The crew roster (factory master data, {CREW_KEY} in the object store) as the warehouse table "
        "`crew`: craftsman code as the machine records it, the set_by label, name, seniority. Join "
        "productions.set_by_code = crew.code to read names instead of craftsman:NN."
    ),
    group_name="master",
    kinds={"sql", "csv"},
    owners=["team:data-platform"],
    code_version="1",
)
def crew(
    context: AssetExecutionContext, object_store: ObjectStoreResource, warehouse: WarehouseResource
) -> MaterializeResult:
    try:
        data = object_store.get(CREW_KEY)
    except ObjectNotFoundError as exc:
        raise Failure(
            description=f"the crew roster {CREW_KEY!r} is missing from the object store "
            f"({object_store.describe()}); write it (`factory-sim roster --store ...` for the simulated factory)",
            allow_retries=False,
        ) from exc
    try:
        members = parse_roster(data)
    except RosterError as exc:
        raise Failure(description=f"{CREW_KEY}: {exc}", allow_retries=False) from exc
    rows = crew_rows(members)
    warehouse.replace_partition([(CREW, {}, rows)])
    stored = warehouse.fetch(CREW)
    context.log.info(f"crew: {len(stored)} craftsmen from {CREW_KEY}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(stored),
            "dagster/column_schema": table_schema(CREW),
            "roster_key": CREW_KEY,
            "roster_sha256": hashlib.sha256(data).hexdigest(),
            "warehouse": warehouse.describe(),
            "preview": MetadataValue.md(md_table(pl.DataFrame(rows))),
        }
    )
