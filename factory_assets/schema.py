"""A warehouse table's Dagster TableSchema, its column descriptions taken from the SQL column comments.

Why: one definition per column (the comment Postgres stores), shown in the UI's column list too."""

from __future__ import annotations

import sqlalchemy as sa
from dagster import TableColumn, TableSchema


def table_schema(table: sa.Table) -> TableSchema:
    """Every column of `table` with its SQL type and its comment as the description."""
    return TableSchema(
        columns=[TableColumn(c.name, str(c.type), description=c.comment or "") for c in table.columns]
    )
