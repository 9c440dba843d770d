"""Warehouse tables of the daily aggregates (SQLAlchemy Core; same DDL on Postgres and SQLite).

Each column's `comment` is its one description: Postgres stores it (COMMENT ON COLUMN, for SQL users) and
the asset's Dagster TableSchema shows it in the UI (aggregates/assets.py reads it from here)."""

from __future__ import annotations

import sqlalchemy as sa

METADATA = sa.MetaData()

DAILY_LINE_AGGREGATES = sa.Table(
    "daily_line_aggregates",
    METADATA,
    sa.Column("line", sa.String(64), primary_key=True, comment="production line"),
    sa.Column(
        "date", sa.Date, primary_key=True, comment="UTC day (a production belongs to the day it starts)"
    ),
    sa.Column("productions", sa.Integer, nullable=False, comment="productions started that day"),
    sa.Column("qa_count", sa.Integer, nullable=False, comment="productions with a published QA score"),
    sa.Column("quality_mean", sa.Float, comment="mean QA quality (0-100)"),
    sa.Column("quality_p10", sa.Float, comment="10th percentile of QA quality (linear interpolation)"),
    sa.Column("quality_p50", sa.Float, comment="median QA quality"),
    sa.Column("quality_p90", sa.Float, comment="90th percentile of QA quality"),
    sa.Column("faults", sa.Integer, nullable=False, comment="productions that ended in a fault"),
    sa.Column("faults_over_current", sa.Integer, nullable=False, comment="over-current faults"),
    sa.Column("faults_over_temperature", sa.Integer, nullable=False, comment="over-temperature faults"),
    sa.Column("run_hours", sa.Float, nullable=False, comment="hours the machine ran (sum of cycle times)"),
    sa.Column("throughput_per_hour", sa.Float, nullable=False, comment="productions per hour of the day"),
    sa.Column("cycle_time_mean_s", sa.Float, comment="mean cycle time, seconds"),
    sa.Column(
        "energy_kwh", sa.Float, nullable=False, comment="energy of all runs, kWh (integral of power_kw)"
    ),
    sa.Column("energy_per_production_kwh", sa.Float, comment="energy per production, kWh"),
)

DAILY_SET_BY_BREAKDOWN = sa.Table(
    "daily_set_by_breakdown",
    METADATA,
    sa.Column("line", sa.String(64), primary_key=True, comment="production line"),
    sa.Column("date", sa.Date, primary_key=True, comment="UTC day"),
    sa.Column(
        "set_by", sa.String(64), primary_key=True, comment="who set the dial: craftsman:NN or model:vN"
    ),
    sa.Column(
        "set_by_kind", sa.String(16), nullable=False, comment="craftsman | model | unknown"
    ),  # craftsman | model | unknown
    sa.Column(
        "productions",
        sa.Integer,
        nullable=False,
        comment="productions that day set by this craftsman / model version",
    ),
    sa.Column(
        "quality_mean",
        sa.Float,
        comment="mean QA quality of those productions (weight by productions across days)",
    ),
    sa.Column("quality_p50", sa.Float, comment="median QA quality of those productions"),
    sa.Column("faults", sa.Integer, nullable=False, comment="of those, ended in a fault"),
    sa.Column("cycle_time_mean_s", sa.Float, comment="mean cycle time, seconds"),
    sa.Column("energy_kwh", sa.Float, nullable=False, comment="energy of those runs, kWh"),
)
