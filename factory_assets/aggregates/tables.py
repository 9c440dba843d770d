"""Warehouse tables of the daily aggregates (SQLAlchemy Core; same DDL on Postgres and SQLite)."""

from __future__ import annotations

import sqlalchemy as sa

METADATA = sa.MetaData()

DAILY_LINE_AGGREGATES = sa.Table(
    "daily_line_aggregates",
    METADATA,
    sa.Column("line", sa.String(64), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("productions", sa.Integer, nullable=False),
    sa.Column("qa_count", sa.Integer, nullable=False),
    sa.Column("quality_mean", sa.Float),
    sa.Column("quality_p10", sa.Float),
    sa.Column("quality_p50", sa.Float),
    sa.Column("quality_p90", sa.Float),
    sa.Column("faults", sa.Integer, nullable=False),
    sa.Column("faults_over_current", sa.Integer, nullable=False),
    sa.Column("faults_over_temperature", sa.Integer, nullable=False),
    sa.Column("run_hours", sa.Float, nullable=False),
    sa.Column("throughput_per_hour", sa.Float, nullable=False),
    sa.Column("cycle_time_mean_s", sa.Float),
    sa.Column("energy_kwh", sa.Float, nullable=False),
    sa.Column("energy_per_production_kwh", sa.Float),
)

DAILY_SET_BY_BREAKDOWN = sa.Table(
    "daily_set_by_breakdown",
    METADATA,
    sa.Column("line", sa.String(64), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("set_by", sa.String(64), primary_key=True),
    sa.Column("set_by_kind", sa.String(16), nullable=False),  # craftsman | model | unknown
    sa.Column("productions", sa.Integer, nullable=False),
    sa.Column("quality_mean", sa.Float),
    sa.Column("quality_p50", sa.Float),
    sa.Column("faults", sa.Integer, nullable=False),
    sa.Column("cycle_time_mean_s", sa.Float),
    sa.Column("energy_kwh", sa.Float, nullable=False),
)
