"""Warehouse resource: Postgres in production, SQLite as the embedded default, one SQLAlchemy interface.

Why: the daily aggregates are replaced per (line, date) in one transaction (delete + insert), which both
engines support; assets never branch on the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dagster import ConfigurableResource
from pydantic import Field


class WarehouseResource(ConfigurableResource):
    """A SQL warehouse reached through a SQLAlchemy URL.

    `sqlite:///var/warehouse.db` (embedded default) or `postgresql+psycopg2://user@host:5432/db`.
    `db_schema` (Postgres only) selects the schema tables live in (created if missing).
    """

    url: str = Field(default="sqlite:///var/warehouse.db", description="SQLAlchemy database URL")
    db_schema: str | None = Field(default=None, description="Postgres schema for the tables")

    def engine(self) -> sa.Engine:
        return _engine(self.url, self.db_schema)

    def replace_partition(
        self, replacements: Sequence[tuple[sa.Table, Mapping[str, Any], Sequence[Mapping[str, Any]]]]
    ) -> None:
        """For each (table, keys, rows): delete rows matching `keys` (all rows when `keys` is empty), insert
        `rows`; all in ONE transaction.

        Readers never see a half-written day, and re-running is idempotent.
        """
        eng = self.engine()
        schema = self._schema()
        with eng.begin() as conn:
            for table, keys, rows in replacements:
                bound = _bind(table, schema)
                bound.metadata.create_all(conn, tables=[bound], checkfirst=True)
                delete = bound.delete()  # empty keys: the whole table (a dimension replaced at once)
                if keys:
                    delete = delete.where(sa.and_(*[bound.c[k] == v for k, v in keys.items()]))
                conn.execute(delete)
                if rows:
                    conn.execute(bound.insert(), [dict(r) for r in rows])

    def fetch(self, table: sa.Table, keys: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of `table` (optionally filtered), ordered by the primary key."""
        eng = self.engine()
        table = _bind(table, self._schema())
        with eng.begin() as conn:
            table.metadata.create_all(conn, tables=[table], checkfirst=True)
            q = sa.select(table)
            if keys:
                q = q.where(sa.and_(*[table.c[k] == v for k, v in keys.items()]))
            q = q.order_by(*table.primary_key.columns)
            return [dict(r._mapping) for r in conn.execute(q)]

    def _schema(self) -> str | None:
        """Schemas apply to Postgres only; SQLite has one namespace per file."""
        return self.db_schema if sa.make_url(self.url).get_backend_name() == "postgresql" else None

    def describe(self) -> str:
        return _engine(self.url, self.db_schema).url.render_as_string(hide_password=True)


@lru_cache(maxsize=16)
def _engine(url: str, db_schema: str | None) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    eng = sa.create_engine(parsed, future=True)
    if db_schema and parsed.get_backend_name() == "postgresql":
        with eng.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{db_schema}"'))
    return eng


@lru_cache(maxsize=64)
def _bind(table: sa.Table, db_schema: str | None) -> sa.Table:
    """The table placed in `db_schema` (a copy in its own MetaData), or itself."""
    if not db_schema:
        return table
    return table.to_metadata(sa.MetaData(), schema=db_schema)
