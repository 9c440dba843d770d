"""Warehouse table `model_performance`: one row per (line, day), replaced per partition (delete + insert).

Same DDL on Postgres and SQLite (SQLAlchemy Core, JSON columns for the per-reason, per-version and
per-craftsman breakdowns), written through WarehouseResource.replace_partition like the daily aggregates.
"""

from __future__ import annotations

import sqlalchemy as sa

METADATA = sa.MetaData()

MODEL_PERFORMANCE = sa.Table(
    "model_performance",
    METADATA,
    sa.Column("line", sa.String(64), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    # the day: productions, who set them, decisions and how they matched
    sa.Column("productions", sa.Integer, nullable=False),
    sa.Column("ai_productions", sa.Integer, nullable=False),
    sa.Column("ai_share", sa.Float),
    sa.Column("craftsman_productions", sa.Integer, nullable=False),
    sa.Column("decisions", sa.Integer, nullable=False),
    sa.Column("answered", sa.Integer, nullable=False),
    sa.Column("fallbacks", sa.Integer, nullable=False),
    sa.Column("fallbacks_by_reason", sa.JSON, nullable=False),
    sa.Column("matched_ai_productions", sa.Integer, nullable=False),
    sa.Column("unmatched_ai_productions", sa.Integer, nullable=False),
    sa.Column("unmatched_decisions", sa.Integer, nullable=False),
    sa.Column("decisions_near_day_end", sa.Integer, nullable=False),
    sa.Column("overridden", sa.Integer, nullable=False),
    sa.Column("fallback_productions", sa.Integer, nullable=False),
    sa.Column("unreadable_decisions", sa.Integer, nullable=False),
    # the day: realized vs predicted
    sa.Column("ai_quality_mean", sa.Float),
    sa.Column("ai_predicted_mean", sa.Float),
    sa.Column("ai_error_mean", sa.Float),  # realized - predicted, matched AI productions with QA
    sa.Column("ai_abs_error_mean", sa.Float),
    sa.Column("ai_faults", sa.Integer, nullable=False),
    sa.Column("ai_fault_rate", sa.Float),
    sa.Column("craftsman_quality_mean", sa.Float),
    sa.Column("fallback_quality_mean", sa.Float),
    sa.Column("model_versions", sa.JSON, nullable=False),
    # the trailing window: the serving version against the craftsmen on its lots
    sa.Column("window_start", sa.Date, nullable=False),
    sa.Column("craftsman_window_start", sa.Date, nullable=False),
    sa.Column("judged_version", sa.String(64)),
    sa.Column("ai_window_productions", sa.Integer, nullable=False),
    sa.Column("ai_window_quality", sa.Float),
    sa.Column("ai_window_fault_rate", sa.Float),
    sa.Column("best_craftsman", sa.String(64)),
    sa.Column("best_craftsman_quality", sa.Float),
    sa.Column("best_craftsman_fault_rate", sa.Float),
    sa.Column("margin", sa.Float),  # AI - best craftsman, quality points
    sa.Column("verdict", sa.String(16), nullable=False),  # pass | fail | not_judged
    sa.Column("craftsmen", sa.JSON, nullable=False),
    sa.Column("missing_days", sa.JSON, nullable=False),  # days of the windows without a production table
    sa.Column("rules", sa.JSON, nullable=False),
)
