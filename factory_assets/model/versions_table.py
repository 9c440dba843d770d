"""The `model_versions` warehouse table: every published version, promoted or rejected, with the reason.

Why merge on re-registration: re-materializing a quarter on the same data yields the same version (the
version is a digest of the boosters), and the registry then answers "already serving" / "not promoted"
again. The row records the decision taken when the version first appeared: trained_at and the promotion
decision are kept, unless this run promoted it. So registering is idempotent: the same row, never two.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import sqlalchemy as sa

from factory_assets.resources.warehouse import WarehouseResource

METADATA = sa.MetaData()

MODEL_VERSIONS = sa.Table(
    "model_versions",
    METADATA,
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("version_number", sa.Integer, nullable=False),
    sa.Column("partition", sa.String(16), nullable=False),  # the quarter (partition key)
    sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_start", sa.Date, nullable=False),  # training window [start, end)
    sa.Column("window_end", sa.Date, nullable=False),
    sa.Column("lines", sa.String(256), nullable=False),
    sa.Column("days", sa.Integer, nullable=False),
    sa.Column("rows_train", sa.Integer, nullable=False),
    sa.Column("rows_holdout", sa.Integer, nullable=False),
    sa.Column("quality_rmse", sa.Float),
    sa.Column("quality_mae", sa.Float),
    sa.Column("predicted_uplift", sa.Float),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("promoted", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)


def json_safe(value: Any) -> Any:
    """NaN/inf become None (Postgres JSON rejects them); containers recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def register_version(warehouse: WarehouseResource, row: dict[str, Any]) -> dict[str, Any]:
    """Upsert one version's row (one transaction) and return what the warehouse now holds."""
    existing = warehouse.fetch(MODEL_VERSIONS, {"version": row["version"]})
    row = {**row, "metrics": json_safe(row["metrics"])}
    if existing:
        first = existing[0]
        row["trained_at"] = first["trained_at"]
        if not row["promoted"]:
            row["promoted"], row["reason"] = first["promoted"], first["reason"]
    if isinstance(row["trained_at"], dt.datetime) and row["trained_at"].tzinfo is None:
        row["trained_at"] = row["trained_at"].replace(tzinfo=dt.UTC)  # SQLite hands back naive datetimes
    warehouse.replace_partition([(MODEL_VERSIONS, {"version": row["version"]}, [row])])
    return warehouse.fetch(MODEL_VERSIONS, {"version": row["version"]})[0]
