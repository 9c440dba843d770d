"""Warehouse dimension tables: `crew` (from the factory's roster) and `lots` (one per production).

Why dimensions and not columns in the Parquet table: a name belongs to the roster the factory maintains,
not to what the machine recorded; renaming a craftsman must not rewrite history's production files. The
data team joins `productions.set_by_code = crew.code` (or `set_by`) and `(line, production_id)` to `lots`.
Each column's `comment` is its one description (Postgres COMMENT ON COLUMN and the UI's TableSchema); the
lot-figure descriptions are the production table's own (production/columns.py).
"""

from __future__ import annotations

import sqlalchemy as sa

from factory_assets.production.columns import BASE_COLUMNS
from factory_core.machine import LOT_COLUMN

METADATA = sa.MetaData()

CREW = sa.Table(
    "crew",
    METADATA,
    sa.Column("code", sa.Integer, primary_key=True, comment="craftsman code as the machine records it (set_by_code)"),
    sa.Column("set_by", sa.String(64), nullable=False, unique=True,
              comment="the production table's set_by label of this craftsman (craftsman:NN)"),
    sa.Column("name", sa.String(64), nullable=False, comment="the craftsman's name (the factory's roster)"),
    sa.Column("skill", sa.String(64), nullable=False, comment="seniority as the roster states it (may be empty)"),
)  # fmt: skip

LOTS = sa.Table(
    "lots",
    METADATA,
    sa.Column("lot_id", sa.String(96), primary_key=True,
              comment="raw-material lot id: {line}-{production_id} (one lot per production, factory_core.machine.lot_id)"),
    sa.Column("line", sa.String(64), nullable=False, comment="production line that consumed the lot"),
    sa.Column("production_id", sa.BigInteger, nullable=False, comment="the production that consumed the lot"),
    sa.Column("date", sa.Date, nullable=False, comment="UTC day the production started (its partition)"),
    *(sa.Column(col, sa.Float, comment=BASE_COLUMNS[col]) for col in LOT_COLUMN.values()),
    sa.UniqueConstraint("line", "production_id"),
)  # fmt: skip
